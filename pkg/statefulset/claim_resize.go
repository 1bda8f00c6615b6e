package statefulset

import (
	"fmt"

	apps "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// stead: claims grow with their template (kubernetes#68737).
//
// Upstream creates a pod's claims from volumeClaimTemplates once and never
// looks at them again, and the API server forbids changing the templates,
// so a set whose volumes are too small needs every claim patched by hand.
// The way to give a set bigger templates is to recreate it around its
// pods (`kubectl delete statefulset web --cascade=orphan`, then apply it
// with the new size): stead's controller then grows each bound claim of
// the set that asks for less than its template, and the storage class's
// expansion does the rest. Claims only grow: a template smaller than a
// claim leaves the claim alone, since volumes cannot shrink.

// claimGrowths are the pod's bound claims that ask for less storage than
// set's templates, each with the template's request in place of its own.
func claimGrowths(set *apps.StatefulSet, pod *v1.Pod, get func(namespace, name string) (*v1.PersistentVolumeClaim, error)) []*v1.PersistentVolumeClaim {
	var grow []*v1.PersistentVolumeClaim
	for _, want := range getPersistentVolumeClaims(set, pod) {
		size, ok := want.Spec.Resources.Requests[v1.ResourceStorage]
		if !ok {
			continue
		}
		claim, err := get(want.Namespace, want.Name)
		if err != nil || claim.DeletionTimestamp != nil || claim.Status.Phase != v1.ClaimBound {
			continue // only a bound claim can grow; a new one is made at the template's size
		}
		have := claim.Spec.Resources.Requests[v1.ResourceStorage]
		if size.Cmp(have) <= 0 {
			continue
		}
		claim = claim.DeepCopy()
		if claim.Spec.Resources.Requests == nil {
			claim.Spec.Resources.Requests = v1.ResourceList{}
		}
		claim.Spec.Resources.Requests[v1.ResourceStorage] = size
		grow = append(grow, claim)
	}
	return grow
}

// GrowClaims asks for the template's size on each of pod's claims that
// asks for less. A claim the API server will not grow (its class does not
// allow expansion) is reported in a Warning event and does not hold up the
// set's other work.
func (spc *StatefulPodControl) GrowClaims(set *apps.StatefulSet, pod *v1.Pod) {
	for _, claim := range claimGrowths(set, pod, spc.objectMgr.GetClaim) {
		size := claim.Spec.Resources.Requests[v1.ResourceStorage]
		if err := spc.objectMgr.UpdateClaim(claim, set); err != nil {
			spc.recorder.Event(set, v1.EventTypeWarning, "ClaimGrowthFailed",
				fmt.Sprintf("Grow Claim %s of Pod %s in StatefulSet %s to %s, as its template asks, failed: %s", claim.Name, pod.Name, set.Name, size.String(), err))
			continue
		}
		spc.recorder.Event(set, v1.EventTypeNormal, "GrowingClaim",
			fmt.Sprintf("Claim %s of Pod %s in StatefulSet %s grows to %s, as its template asks", claim.Name, pod.Name, set.Name, size.String()))
	}
}
