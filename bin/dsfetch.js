#!/usr/bin/env node
// The dsfetch command: the compiled CLI (npm install builds dist/ through "prepare").
import "../dist/cli/entry.js";
