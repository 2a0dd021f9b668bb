// The local node: a one-node "kubelet" for the local control plane (docs/local-node.md).
export { LocalNodeError, type LocalNodeErrorCode } from './errors.ts';
export { commandPaths, mapCommand } from './exec.ts';
export { type LocalNode, type LocalNodeOptions, type LocalNodePodInfo, startLocalNode } from './node.ts';
