#!/bin/sh
# Postfix's smtp-source, the load generator the intake figures of issue 9 were measured
# with (Debian package "postfix"). Installs it without configuring or starting Postfix.
set -eu
if command -v smtp-source >/dev/null 2>&1; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends postfix >/dev/null
# No mail server is wanted here: make sure none runs.
postfix stop >/dev/null 2>&1 || true
command -v smtp-source
