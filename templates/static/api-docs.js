// /api/docs: renders the OpenAPI document of /api/v1 (no third-party code, no CDN).
// Text goes in with textContent only: nothing from the document becomes markup.
"use strict";
(function () {
  const root = document.getElementById("api-docs");
  if (!root) return;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function schemaText(schema, doc, depth) {
    if (!schema) return "any";
    if (schema.$ref) return refName(schema.$ref);
    if (schema.anyOf) return schema.anyOf.map((s) => schemaText(s, doc, depth)).join(" | ");
    if (schema.allOf) return schema.allOf.map((s) => schemaText(s, doc, depth)).join(" & ");
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    if (schema.type === "array") return schemaText(schema.items, doc, depth) + "[]";
    if (schema.type === "object" && schema.additionalProperties) {
      return "{string: " + schemaText(schema.additionalProperties, doc, depth) + "}";
    }
    let text = schema.type || "any";
    if (schema.format) text += " (" + schema.format + ")";
    return text;
  }

  function schemaLink(schema, doc) {
    const text = schemaText(schema, doc, 0);
    if (schema && schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref) }, text);
    if (schema && schema.type === "array" && schema.items && schema.items.$ref) {
      return el("a", { href: "#schema-" + refName(schema.items.$ref) }, text);
    }
    return el("code", {}, text);
  }

  function propertiesTable(schema, doc) {
    const required = new Set(schema.required || []);
    const table = el("table", { class: "api-fields" },
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"),
        el("th", {}, "required"), el("th", {}, "description"))));
    const body = el("tbody");
    for (const [name, prop] of Object.entries(schema.properties || {})) {
      const notes = [prop.description || ""];
      if (prop.maxLength !== undefined) notes.push("at most " + prop.maxLength + " characters");
      if (prop.default !== undefined && prop.default !== null) {
        notes.push("default " + JSON.stringify(prop.default));
      }
      body.append(el("tr", {}, el("td", {}, el("code", {}, name)), el("td", {}, schemaLink(prop, doc)),
        el("td", {}, required.has(name) ? "yes" : ""), el("td", {}, notes.filter(Boolean).join("; "))));
    }
    table.append(body);
    return table;
  }

  function operation(path, method, op, doc) {
    const id = "op-" + op.operationId;
    const section = el("section", { class: "api-operation", id: id },
      el("h3", {}, el("span", { class: "api-method" }, method.toUpperCase()), " ",
        el("code", {}, "/api/v1" + path), " — ", op.summary || ""));
    for (const para of (op.description || "").split("\n\n")) {
      if (para.trim()) section.append(el("p", {}, para.trim()));
    }
    const params = op.parameters || [];
    if (params.length) {
      section.append(el("h4", {}, "Parameters"));
      const list = el("ul");
      for (const p of params) {
        list.append(el("li", {}, el("code", {}, p.name), " (" + p.in + (p.required ? ", required" : "") + ") ",
          schemaLink(p.schema, doc), p.description ? " — " + p.description : ""));
      }
      section.append(list);
    }
    if (op.requestBody) {
      section.append(el("h4", {}, "Body"));
      const list = el("ul");
      for (const [type, media] of Object.entries(op.requestBody.content)) {
        list.append(el("li", {}, el("code", {}, type), ": ", schemaLink(media.schema, doc)));
      }
      section.append(list);
    }
    section.append(el("h4", {}, "Responses"));
    const list = el("ul");
    for (const [status, response] of Object.entries(op.responses)) {
      const item = el("li", {}, el("strong", {}, status), " ", response.description || "");
      for (const [type, media] of Object.entries(response.content || {})) {
        item.append(" ", el("code", {}, type), " ", schemaLink(media.schema, doc));
      }
      const headers = Object.keys(response.headers || {});
      if (headers.length) item.append(" (headers: " + headers.join(", ") + ")");
      list.append(item);
    }
    section.append(list);
    return section;
  }

  function render(doc) {
    const toc = document.getElementById("api-toc");
    const ops = document.getElementById("api-operations");
    const schemas = document.getElementById("api-schemas");
    ops.textContent = "";
    const byTag = new Map();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([path, method, op]);
      }
    }
    const tocList = el("ul");
    for (const [tag, entries] of byTag) {
      ops.append(el("h2", { id: "tag-" + tag }, tag));
      const sub = el("ul");
      for (const [path, method, op] of entries) {
        ops.append(operation(path, method, op, doc));
        sub.append(el("li", {}, el("a", { href: "#op-" + op.operationId },
          method.toUpperCase() + " " + path)));
      }
      tocList.append(el("li", {}, el("a", { href: "#tag-" + tag }, tag), sub));
    }
    toc.append(tocList);
    schemas.append(el("h2", {}, "Schemas"));
    for (const [name, schema] of Object.entries(doc.components.schemas || {})) {
      const section = el("section", { class: "api-schema", id: "schema-" + name },
        el("h3", {}, name));
      if (schema.description) section.append(el("p", {}, schema.description));
      if (schema.properties) section.append(propertiesTable(schema, doc));
      else section.append(el("p", {}, el("code", {}, schemaText(schema, doc, 0))));
      schemas.append(section);
    }
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  fetch(root.dataset.document, { headers: { Accept: "application/json" } })
    .then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(render)
    .catch((error) => {
      document.getElementById("api-operations").textContent =
        "The document could not be loaded: " + error.message;
    });
})();
