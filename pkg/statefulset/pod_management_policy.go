package statefulset

import (
	"fmt"

	apps "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// PodManagementPolicyAnnotation lets a user change the pod management policy
// of a live StatefulSet. The API server refuses any update of
// spec.podManagementPolicy, so without it the only way to switch between
// OrderedReady and Parallel is to delete the set (orphaning its pods) and
// create it again.
//
// When the annotation is present and its value is exactly "OrderedReady" or
// "Parallel" (the spelling of apps/v1's PodManagementPolicyType values), it
// overrides spec.podManagementPolicy everywhere the controller reads the
// policy: ordered versus burst creation and deletion, rolling-update pacing
// and the policy label of the controller's metrics. Any other value is
// ignored, spec.podManagementPolicy applies, and every sync of the set emits
// a Warning event (reason InvalidPodManagementPolicyAnnotation) naming the
// annotation and the value. Removing the annotation goes back to the spec.
//
// Annotations do not change the set's template, so setting or changing the
// annotation creates no new ControllerRevision and restarts no pod; it only
// changes how the controller paces what it does from its next sync on.
const PodManagementPolicyAnnotation = "stead.io/pod-management-policy"

// InvalidPodManagementPolicyAnnotationReason is the reason of the Warning
// event emitted for an unusable PodManagementPolicyAnnotation value.
const InvalidPodManagementPolicyAnnotationReason = "InvalidPodManagementPolicyAnnotation"

// effectivePodManagementPolicy returns the pod management policy the
// controller applies to set: the annotation's value when it is valid, else
// spec.podManagementPolicy, unchanged (an empty spec value keeps upstream's
// meaning, OrderedReady).
func effectivePodManagementPolicy(set *apps.StatefulSet) apps.PodManagementPolicyType {
	if policy, ok := podManagementPolicyFromAnnotation(set); ok {
		return policy
	}
	return set.Spec.PodManagementPolicy
}

// podManagementPolicyFromAnnotation returns the policy named by set's
// PodManagementPolicyAnnotation and whether that annotation is present and
// valid.
func podManagementPolicyFromAnnotation(set *apps.StatefulSet) (apps.PodManagementPolicyType, bool) {
	value, present := set.Annotations[PodManagementPolicyAnnotation]
	if !present {
		return "", false
	}
	switch policy := apps.PodManagementPolicyType(value); policy {
	case apps.OrderedReadyPodManagement, apps.ParallelPodManagement:
		return policy, true
	}
	return "", false
}

// invalidPodManagementPolicyAnnotation returns the annotation's value and
// true when set carries PodManagementPolicyAnnotation with a value that is
// not a policy.
func invalidPodManagementPolicyAnnotation(set *apps.StatefulSet) (string, bool) {
	value, present := set.Annotations[PodManagementPolicyAnnotation]
	if !present {
		return "", false
	}
	if _, valid := podManagementPolicyFromAnnotation(set); valid {
		return "", false
	}
	return value, true
}

// warnOnInvalidPodManagementPolicyAnnotation emits a Warning event on set
// when its PodManagementPolicyAnnotation is present but unusable. It is
// called once per sync; the event recorder aggregates the repeats.
func (ssc *defaultStatefulSetControl) warnOnInvalidPodManagementPolicyAnnotation(set *apps.StatefulSet) {
	value, invalid := invalidPodManagementPolicyAnnotation(set)
	if !invalid {
		return
	}
	ssc.podControl.recorder.Event(set, v1.EventTypeWarning, InvalidPodManagementPolicyAnnotationReason,
		fmt.Sprintf("annotation %s has invalid value %q (want %q or %q); using spec.podManagementPolicy %q",
			PodManagementPolicyAnnotation, value, apps.OrderedReadyPodManagement, apps.ParallelPodManagement,
			policyOrDefault(set.Spec.PodManagementPolicy)))
}

// policyOrDefault spells an empty policy as the default it stands for, for
// messages.
func policyOrDefault(policy apps.PodManagementPolicyType) apps.PodManagementPolicyType {
	if policy == "" {
		return apps.OrderedReadyPodManagement
	}
	return policy
}
