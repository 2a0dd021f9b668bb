// Moved to hack/lib/control-plane.ts, which hack/ and bench/ import too (docs/architecture.md says why).
export * from '../../hack/lib/control-plane.ts';
