// Package statefulset is stead's StatefulSet controller; the upstream one
// is not started.
//
// It began as a port of Kubernetes v1.37.2's pkg/controller/statefulset
// (Apache-2.0, The Kubernetes Authors; the ported files keep their
// headers), so that its behaviour is upstream's exactly, proven by
// upstream's own unit tests, which are kept here and run in CI: ordered and
// parallel pod management, identity and storage, rolling updates with
// partition and maxUnavailable, ControllerRevisions and rollback,
// minReadySeconds, PVC retention policy and ordinals.start.
//
// stead's own work (recovery from a broken rollout, PVC resize from the
// template, fast failover, fast scale-out) is built on top of it here, in
// files of its own, hooked into the ported files by a few lines marked
// "// stead:":
//   - stuck_rollout.go: a RollingUpdate stuck on a pod that never becomes
//     Ready heals when the template is fixed or reverted (kubernetes#67250).
//   - pod_management_policy.go: the stead.io/pod-management-policy
//     annotation overrides the immutable spec.podManagementPolicy.
//
// Users' documentation: docs/statefulset.md.
package statefulset
