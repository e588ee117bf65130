// helpdesk: progressive enhancements only; every page works without this file.
(function () {
  "use strict";

  // Select-all checkbox on ticket lists.
  document.querySelectorAll("input.select-all").forEach(function (box) {
    box.addEventListener("change", function () {
      var table = box.closest("table");
      table.querySelectorAll("input[name=ticket]").forEach(function (c) { c.checked = box.checked; });
    });
  });

  // Canned responses: insert the chosen text into the reply.
  document.querySelectorAll("select.canned").forEach(function (select) {
    select.addEventListener("change", function () {
      var area = select.closest("form").querySelector("textarea");
      if (select.value) {
        area.value = (area.value ? area.value + "\n\n" : "") + select.value;
        area.focus();
      }
      select.value = "";
    });
  });

  // Collision hint: who else is viewing, and did anything arrive since we opened it.
  var ticket = document.querySelector("article.ticket[data-presence]");
  if (!ticket) { return; }
  var url = ticket.getAttribute("data-presence");
  var last = ticket.getAttribute("data-last");
  var viewersBox = document.getElementById("collision");
  var newerBox = document.getElementById("newer");
  var newer = 0;
  function poll() {
    fetch(url + "?after=" + encodeURIComponent(last), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        viewersBox.hidden = data.viewers.length === 0;
        viewersBox.textContent = data.viewers.length ? "Also viewing: " + data.viewers.join(", ") : "";
        newer = data.new_messages;
        newerBox.hidden = newer === 0;
        newerBox.textContent = newer ? newer + " new message(s) since you opened this ticket. Reload to read them." : "";
      })
      .catch(function () {});
  }
  var polls = 0;
  var timer = setInterval(function () {
    polls += 1;
    if (polls > 480) { clearInterval(timer); return; }  // stop after two hours
    poll();
  }, 15000);
  var reply = document.querySelector("form.reply");
  if (reply) {
    reply.addEventListener("submit", function (event) {
      var confirmBox = reply.querySelector("input[name=confirm]");
      if (newer && confirmBox && !confirmBox.checked &&
          !window.confirm("New messages arrived since you opened this ticket. Send your reply anyway?")) {
        event.preventDefault();
      } else if (newer && confirmBox) {
        confirmBox.checked = true;
      }
    });
  }
})();
