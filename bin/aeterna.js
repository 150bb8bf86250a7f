#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader, so there is no build step to forget.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../gateway/cli.ts');
const code = await main(process.argv.slice(2));
if (code !== 0) process.exit(code);
