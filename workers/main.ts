// The worker process: `npm run worker` (node --import tsx workers/main.ts), any number of them.
import { runWorkerProcess } from './worker.js';

process.exit(await runWorkerProcess());
