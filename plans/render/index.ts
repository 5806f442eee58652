export { renderPlanText, renderPlanJson, describeAction, formatBytes, type RenderOptions } from './text.js';
