package statefulset

import (
	"slices"
	"sort"
	"strings"
	"testing"

	apps "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/kubernetes/pkg/features"
)

func withPolicyAnnotation(set *apps.StatefulSet, value *string) *apps.StatefulSet {
	if value == nil {
		delete(set.Annotations, PodManagementPolicyAnnotation)
		return set
	}
	if set.Annotations == nil {
		set.Annotations = map[string]string{}
	}
	set.Annotations[PodManagementPolicyAnnotation] = *value
	return set
}

func strPtr(s string) *string { return &s }

func TestEffectivePodManagementPolicy(t *testing.T) {
	tests := []struct {
		name        string
		spec        apps.PodManagementPolicyType
		annotation  *string
		want        apps.PodManagementPolicyType
		wantInvalid bool
	}{
		{name: "no annotation, OrderedReady", spec: apps.OrderedReadyPodManagement, want: apps.OrderedReadyPodManagement},
		{name: "no annotation, Parallel", spec: apps.ParallelPodManagement, want: apps.ParallelPodManagement},
		{name: "no annotation, empty spec stays empty (upstream default)", spec: "", want: ""},
		{name: "Parallel overrides OrderedReady", spec: apps.OrderedReadyPodManagement, annotation: strPtr("Parallel"), want: apps.ParallelPodManagement},
		{name: "OrderedReady overrides Parallel", spec: apps.ParallelPodManagement, annotation: strPtr("OrderedReady"), want: apps.OrderedReadyPodManagement},
		{name: "Parallel overrides empty spec", spec: "", annotation: strPtr("Parallel"), want: apps.ParallelPodManagement},
		{name: "same as spec", spec: apps.ParallelPodManagement, annotation: strPtr("Parallel"), want: apps.ParallelPodManagement},
		{name: "wrong case is invalid", spec: apps.OrderedReadyPodManagement, annotation: strPtr("parallel"), want: apps.OrderedReadyPodManagement, wantInvalid: true},
		{name: "unknown value is invalid", spec: apps.ParallelPodManagement, annotation: strPtr("Burst"), want: apps.ParallelPodManagement, wantInvalid: true},
		{name: "empty value is invalid", spec: apps.ParallelPodManagement, annotation: strPtr(""), want: apps.ParallelPodManagement, wantInvalid: true},
		{name: "whitespace is invalid", spec: apps.OrderedReadyPodManagement, annotation: strPtr(" Parallel"), want: apps.OrderedReadyPodManagement, wantInvalid: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = tc.spec
			withPolicyAnnotation(set, tc.annotation)
			if got := effectivePodManagementPolicy(set); got != tc.want {
				t.Errorf("effectivePodManagementPolicy = %q, want %q", got, tc.want)
			}
			if got := allowsBurst(set); got != (tc.want == apps.ParallelPodManagement) {
				t.Errorf("allowsBurst = %v with effective policy %q", got, tc.want)
			}
			value, invalid := invalidPodManagementPolicyAnnotation(set)
			if invalid != tc.wantInvalid {
				t.Errorf("invalid = %v, want %v", invalid, tc.wantInvalid)
			}
			if invalid && value != *tc.annotation {
				t.Errorf("invalid value %q, want %q", value, *tc.annotation)
			}
		})
	}
}

// podCount is the number of the set's pods. The policy tests sync without
// the simulated kubelet, so created pods stay without a phase (never Ready):
// OrderedReady creates one pod and waits, Parallel creates them all.
func podCount(h *stuckHarness) int { return len(h.pods()) }

// TestPodManagementPolicyAnnotationSwitchesLiveSet: the annotation changes
// the policy of an existing set, both ways, and removing it goes back to
// the spec.
func TestPodManagementPolicyAnnotationSwitchesLiveSet(t *testing.T) {
	t.Run("OrderedReady spec, switched to Parallel and back", func(t *testing.T) {
		set := newStatefulSet(3)
		set.Spec.PodManagementPolicy = apps.OrderedReadyPodManagement
		h := newStuckHarness(t, set, v1.PodRunning)

		h.sync()
		h.sync()
		if n := podCount(h); n != 1 {
			t.Fatalf("OrderedReady: %d pods after two syncs with pod 0 not Ready, want 1", n)
		}

		h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, strPtr("Parallel")) })
		h.sync()
		if n := podCount(h); n != 3 {
			t.Fatalf("annotated Parallel: %d pods after one sync, want 3", n)
		}

		h.edit(func(set *apps.StatefulSet) {
			withPolicyAnnotation(set, strPtr("OrderedReady"))
			*set.Spec.Replicas = 5
		})
		h.sync()
		h.sync()
		if n := podCount(h); n != 3 {
			t.Fatalf("annotated OrderedReady: %d pods with pods not Ready, want 3 (no new pod)", n)
		}

		h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, strPtr("Parallel")) })
		h.sync()
		if n := podCount(h); n != 5 {
			t.Fatalf("annotated Parallel again: %d pods, want 5", n)
		}

		// Scale down: Parallel deletes both condemned pods in one sync,
		// OrderedReady (annotation removed, spec applies) waits for the
		// unready pods.
		h.edit(func(set *apps.StatefulSet) {
			withPolicyAnnotation(set, nil)
			*set.Spec.Replicas = 3
		})
		h.sync()
		if n := podCount(h); n != 5 {
			t.Fatalf("annotation removed (spec OrderedReady): %d pods after scale-down sync with pods not Ready, want 5", n)
		}
		h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, strPtr("Parallel")) })
		h.sync()
		if n := podCount(h); n != 3 {
			t.Fatalf("annotated Parallel: %d pods after scale-down sync, want 3", n)
		}
		if ev := h.events.withReason(InvalidPodManagementPolicyAnnotationReason); len(ev) != 0 {
			t.Fatalf("warnings for valid values: %+v", ev)
		}
	})

	t.Run("Parallel spec, switched to OrderedReady", func(t *testing.T) {
		set := newStatefulSet(3)
		set.Spec.PodManagementPolicy = apps.ParallelPodManagement
		withPolicyAnnotation(set, strPtr("OrderedReady"))
		h := newStuckHarness(t, set, v1.PodRunning)
		h.sync()
		h.sync()
		if n := podCount(h); n != 1 {
			t.Fatalf("annotated OrderedReady: %d pods, want 1", n)
		}
		h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, nil) })
		h.sync()
		if n := podCount(h); n != 3 {
			t.Fatalf("annotation removed (spec Parallel): %d pods, want 3", n)
		}
	})
}

// TestPodManagementPolicyAnnotationInvalidWarns: an invalid value is
// ignored (the spec applies) and named in a Warning event.
func TestPodManagementPolicyAnnotationInvalidWarns(t *testing.T) {
	for _, tc := range []struct {
		spec      apps.PodManagementPolicyType
		value     string
		wantPods  int
		wantInMsg string
	}{
		{spec: apps.OrderedReadyPodManagement, value: "parallel", wantPods: 1, wantInMsg: `using spec.podManagementPolicy "OrderedReady"`},
		{spec: apps.OrderedReadyPodManagement, value: "", wantPods: 1, wantInMsg: `using spec.podManagementPolicy "OrderedReady"`},
		{spec: "", value: "Burst", wantPods: 1, wantInMsg: `using spec.podManagementPolicy "OrderedReady"`},
		{spec: apps.ParallelPodManagement, value: "Ordered", wantPods: 3, wantInMsg: `using spec.podManagementPolicy "Parallel"`},
	} {
		t.Run(string(tc.spec)+"/"+tc.value, func(t *testing.T) {
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = tc.spec
			withPolicyAnnotation(set, strPtr(tc.value))
			h := newStuckHarness(t, set, v1.PodRunning)
			h.sync()
			h.sync()
			if n := podCount(h); n != tc.wantPods {
				t.Fatalf("%d pods, want %d (spec policy)", n, tc.wantPods)
			}
			ev := h.events.withReason(InvalidPodManagementPolicyAnnotationReason)
			if len(ev) == 0 {
				t.Fatalf("no %s event", InvalidPodManagementPolicyAnnotationReason)
			}
			for _, e := range ev {
				if e.eventType != v1.EventTypeWarning {
					t.Errorf("event type %s, want Warning", e.eventType)
				}
				for _, want := range []string{PodManagementPolicyAnnotation, `"` + tc.value + `"`, tc.wantInMsg} {
					if !strings.Contains(e.message, want) {
						t.Errorf("message %q does not contain %q", e.message, want)
					}
				}
			}

			// Fixing the value stops the warnings and applies it.
			h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, strPtr("Parallel")) })
			before := len(ev)
			h.sync()
			if n := podCount(h); n != 3 {
				t.Fatalf("valid Parallel: %d pods, want 3", n)
			}
			if after := len(h.events.withReason(InvalidPodManagementPolicyAnnotationReason)); after != before {
				t.Fatalf("warning emitted for a valid value")
			}
		})
	}
}

// TestPodManagementPolicyAnnotationRollingUpdatePacing: the rolling
// update's maxUnavailable path (MaxUnavailableStatefulSet) follows the
// annotation too: a Parallel set replaces an unavailable pod of the old
// revision, an OrderedReady one waits for it (the upstream cases of
// TestStatefulSetControlRollingUpdateWithMaxUnavailableAndUnavailableStalePod).
func TestPodManagementPolicyAnnotationRollingUpdatePacing(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.MaxUnavailableStatefulSet, true)
	for _, tc := range []struct {
		name          string
		spec          apps.PodManagementPolicyType
		annotation    *string
		wantRemaining []int
	}{
		{name: "spec OrderedReady", spec: apps.OrderedReadyPodManagement, wantRemaining: []int{0, 1, 2}},
		{name: "spec OrderedReady, annotated Parallel", spec: apps.OrderedReadyPodManagement, annotation: strPtr("Parallel"), wantRemaining: []int{0, 1}},
		{name: "spec Parallel", spec: apps.ParallelPodManagement, wantRemaining: []int{0, 1}},
		{name: "spec Parallel, annotated OrderedReady", spec: apps.ParallelPodManagement, annotation: strPtr("OrderedReady"), wantRemaining: []int{0, 1, 2}},
		{name: "spec Parallel, invalid annotation", spec: apps.ParallelPodManagement, annotation: strPtr("ordered"), wantRemaining: []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = tc.spec
			h := newStuckHarness(t, set, v1.PodRunning)
			h.runUntil(3, "up", h.settled)
			h.edit(func(set *apps.StatefulSet) { withPolicyAnnotation(set, tc.annotation) })
			set = h.set()
			maxUnavailable := intstr.FromInt32(1)
			set.Spec.UpdateStrategy.RollingUpdate = &apps.RollingUpdateStatefulSetStrategy{Partition: ptrInt32(0), MaxUnavailable: &maxUnavailable}
			if _, err := h.om.setPodReadyCondition(set, 2, false, testNow); err != nil {
				t.Fatal(err)
			}
			if _, err := updateStatefulSetAfterInvariantEstablished(t.Context(), h.ssc.(*defaultStatefulSetControl), set, h.pods(),
				&apps.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, apps.StatefulSetStatus{Replicas: 3}, testNow); err != nil {
				t.Fatal(err)
			}
			var remaining []int
			for _, pod := range h.pods() {
				remaining = append(remaining, getOrdinal(pod))
			}
			sort.Ints(remaining)
			if !slices.Equal(remaining, tc.wantRemaining) {
				t.Fatalf("remaining ordinals %v, want %v", remaining, tc.wantRemaining)
			}
		})
	}
}

// TestBrokenFirstRevisionHeals: a set created with a broken template and
// more than one replica (kubernetes#60164) has only pod 0, never Ready;
// once the template is fixed, the controller replaces pod 0 itself under
// OrderedReady, and the set comes up at the fixed revision.
func TestBrokenFirstRevisionHeals(t *testing.T) {
	set := newStatefulSet(2)
	set.Spec.PodManagementPolicy = apps.OrderedReadyPodManagement
	set.Spec.Template.Spec.Containers[0].Image = brokenImage
	h := newStuckHarness(t, set, v1.PodRunning)
	for i := 0; i < 10; i++ {
		h.step(2)
	}
	if n := podCount(h); n != 1 || isRunningAndReady(h.pod(0)) {
		t.Fatalf("want only pod 0, not Ready: %s", h.describe())
	}

	h.setImage(fixedImage)
	deletes := h.deleteRequests()
	h.runUntil(2, "healed", func() bool {
		if !h.settled() {
			return false
		}
		for _, pod := range h.pods() {
			if pod.Spec.Containers[0].Image != fixedImage {
				return false
			}
		}
		return true
	})
	if h.deleteRequests() != deletes+1 {
		t.Fatalf("%d deletions, want the broken pod 0's alone: %s", h.deleteRequests()-deletes, h.describe())
	}
	if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 1 {
		t.Fatalf("want one %s event, got %+v", RecreatingBrokenPodReason, ev)
	}
}
