#!/usr/bin/env node
// npm bin entry: runs the TypeScript CLI through tsx's loader (no build step; ADR 0001).
import { register } from "tsx/esm/api";

register();
await import("../cli/homelab.ts");
