#!/bin/sh
# /usr/bin/virt-cohort: the packaged program, run by the system's Node.js.
exec /usr/bin/node /usr/lib/virt-cohort/dist/src/cli/main.js "$@"
