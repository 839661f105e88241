export { loadEnvironment, parseEnvironment, type Environment, type Host, type Link, type Price, type Site } from './env.js';
export { largestHost, mergeLive, type HostInfo, type VmInfo } from './live.js';
export { planMoves, type Move, type Plan, type PlanOptions } from './plan.js';
export { placeCluster, type ClusterSpec, type InitialPlacement, type NewVm, type PlaceOptions } from './initial.js';
export { UNITS, type Objective } from './problem.js';
export type { Score } from './state.js';
