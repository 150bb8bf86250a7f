export { EventLog, type AppendEventInput } from './log.js';
