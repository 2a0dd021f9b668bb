// Moved to hack/lib/netns.ts, which bench/ imports too (docs/architecture.md says why).
export * from '../../hack/lib/netns.ts';
