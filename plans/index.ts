export * from './actions.js';
export { plan, planDestroy, hostImpacts, membershipDigest, PlanRefusedError, id as actionId, type PlanInput } from './planner.js';
export { imageInfoFromResolved } from './image-info.js';
export { loadPlanFile, savePlanFile, checkPlanFresh, PlanFileError } from './planfile.js';
export { preparePlan, type PrepareOptions, type PreparedPlan } from './prepare.js';
export { renderPlanText, renderPlanJson } from './render/index.js';
export { statePathFor } from '../state/paths.js';
