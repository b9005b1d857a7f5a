// The public surface of src/obs: logging, and the member status page (traces and metrics arrive with their issue).
export { createConsoleLogger } from './logger.ts';
export type { LogLevel } from './logger.ts';
export { renderStatusPage, STATUS_PAGE_REFRESH_MS } from './status-page.ts';
export type { MemberStatusRow, MigrationStatusView, StatusDocument } from './status-document.ts';
