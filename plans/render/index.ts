export { renderPlanText, renderPlanJson, renderRefreshText, describeAction, describeDrift, formatBytes, type RenderOptions } from './text.js';
