#!/usr/bin/env node
// The dsfetch command: the bundled CLI (npm install builds dist/ through "prepare";
// scripts/bundle.ts says why one file).
import "../dist/bundle/dsfetch.js";
