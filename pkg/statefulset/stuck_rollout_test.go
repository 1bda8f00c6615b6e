package statefulset

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apps "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	podutil "k8s.io/kubernetes/pkg/api/v1/pod"
	"k8s.io/kubernetes/pkg/controller"
	"k8s.io/kubernetes/pkg/controller/history"
	"k8s.io/kubernetes/pkg/features"
)

// This file tests stuck_rollout.go: the pure rule (findBrokenRolloutPod)
// case by case, then whole scenarios through UpdateStatefulSet with the
// fake object manager of stateful_set_control_test.go.

// recordedEvent is one event captured by eventLog.
type recordedEvent struct {
	eventType, reason, message string
}

// eventLog is an EventRecorder that keeps every event (record.FakeRecorder
// blocks once its buffer is full).
type eventLog struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (l *eventLog) Event(object runtime.Object, eventType, reason, message string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, recordedEvent{eventType, reason, message})
}

func (l *eventLog) Eventf(object runtime.Object, eventType, reason, messageFmt string, args ...interface{}) {
	l.Event(object, eventType, reason, fmt.Sprintf(messageFmt, args...))
}

func (l *eventLog) AnnotatedEventf(object runtime.Object, annotations map[string]string, eventType, reason, messageFmt string, args ...interface{}) {
	l.Eventf(object, eventType, reason, messageFmt, args...)
}

// withReason returns the events with the given reason, in order.
func (l *eventLog) withReason(reason string) []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recordedEvent
	for _, e := range l.events {
		if e.reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// setupControllerWithEvents is setupController with an event recorder the
// test can read.
func setupControllerWithEvents(t *testing.T, client clientset.Interface) (*fakeObjectManager, StatefulSetControlInterface, *eventLog) {
	t.Helper()
	informerFactory := informers.NewSharedInformerFactory(client, controller.NoResyncPeriodFunc())
	om := newFakeObjectManager(informerFactory)
	events := &eventLog{}
	spc := NewStatefulPodControlFromManager(om, events)
	ssu := newFakeStatefulSetStatusUpdater(informerFactory.Apps().V1().StatefulSets())
	ssc := NewDefaultStatefulSetControl(spc, ssu, history.NewFakeHistory(informerFactory.Apps().V1().ControllerRevisions()))
	sets, err := client.AppsV1().StatefulSets("").List(context.TODO(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range sets.Items {
		if err := om.setsIndexer.Update(&sets.Items[i]); err != nil {
			t.Fatal(err)
		}
	}
	return om, ssc, events
}

const (
	goodImage   = "nginx" // newStatefulSet's image
	fixedImage  = "nginx:fixed"
	brokenImage = "registry.invalid/broken:1"
)

// testNow is the clock of these tests: pods become Ready at testNow and
// minReadySeconds is 0 unless a case sets it.
var testNow = time.Date(2026, time.March, 12, 12, 0, 0, 0, time.UTC)

// stuckHarness drives one StatefulSet through the controller and a
// simulated kubelet.
type stuckHarness struct {
	t      *testing.T
	om     *fakeObjectManager
	ssc    StatefulSetControlInterface
	events *eventLog
	name   string
	ns     string
	// brokenPhase is where a pod running brokenImage stays: PodRunning with
	// Ready=False (crash loop, failing readiness probe) or PodPending
	// (image pull error).
	brokenPhase v1.PodPhase
}

func newStuckHarness(t *testing.T, set *apps.StatefulSet, brokenPhase v1.PodPhase) *stuckHarness {
	om, ssc, events := setupControllerWithEvents(t, fake.NewClientset(set))
	return &stuckHarness{t: t, om: om, ssc: ssc, events: events, name: set.Name, ns: set.Namespace, brokenPhase: brokenPhase}
}

func (h *stuckHarness) set() *apps.StatefulSet {
	h.t.Helper()
	set, err := h.om.setsLister.StatefulSets(h.ns).Get(h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	return set.DeepCopy()
}

// pods returns the set's pods sorted by ordinal.
func (h *stuckHarness) pods() []*v1.Pod {
	h.t.Helper()
	set := h.set()
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		h.t.Fatal(err)
	}
	pods, err := h.om.podsLister.Pods(h.ns).List(selector)
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Sort(ascendingOrdinal(pods))
	return pods
}

func (h *stuckHarness) pod(ordinal int) *v1.Pod {
	for _, pod := range h.pods() {
		if getOrdinal(pod) == ordinal {
			return pod
		}
	}
	return nil
}

// edit changes the stored set, as a user's update would.
func (h *stuckHarness) edit(mutate func(set *apps.StatefulSet)) {
	h.t.Helper()
	set := h.set()
	mutate(set)
	set.Generation++
	if err := h.om.setsIndexer.Update(set); err != nil {
		h.t.Fatal(err)
	}
}

func (h *stuckHarness) setImage(image string) {
	h.edit(func(set *apps.StatefulSet) { set.Spec.Template.Spec.Containers[0].Image = image })
}

// sync runs the controller once.
func (h *stuckHarness) sync() {
	h.t.Helper()
	if _, err := h.ssc.UpdateStatefulSet(context.TODO(), h.set(), h.pods(), testNow); err != nil {
		h.t.Fatalf("UpdateStatefulSet: %v", err)
	}
}

// kubelet moves every pod one step: no phase -> Pending -> Running ->
// Ready, except that a pod running brokenImage never gets past
// h.brokenPhase and is never Ready.
func (h *stuckHarness) kubelet() {
	h.t.Helper()
	set := h.set()
	for _, pod := range h.pods() {
		ordinal := getOrdinal(pod)
		broken := pod.Spec.Containers[0].Image == brokenImage
		var err error
		switch {
		case pod.Status.Phase == "":
			_, err = h.om.setPodPending(set, ordinal)
		case pod.Status.Phase == v1.PodPending && !(broken && h.brokenPhase == v1.PodPending):
			_, err = h.om.setPodRunning(set, ordinal)
		case pod.Status.Phase == v1.PodRunning && broken:
			if _, c := podutil.GetPodCondition(&pod.Status, v1.PodReady); c == nil {
				_, err = h.om.setPodReadyCondition(set, ordinal, false, testNow)
			}
		case pod.Status.Phase == v1.PodRunning && !podutil.IsPodReady(pod):
			_, err = h.om.setPodReadyCondition(set, ordinal, true, testNow)
		}
		if err != nil {
			h.t.Fatal(err)
		}
	}
}

// unready counts the replicas that are missing or not Ready.
func (h *stuckHarness) unready() int {
	set := h.set()
	ready := 0
	for _, pod := range h.pods() {
		if podInOrdinalRange(pod, set) && isRunningAndReady(pod) && !isTerminating(pod) {
			ready++
		}
	}
	return int(*set.Spec.Replicas) - ready
}

// step is one round: kubelet, then controller. It checks that the rollout
// never has more than maxDown replicas down at once.
func (h *stuckHarness) step(maxDown int) {
	h.t.Helper()
	h.kubelet()
	h.sync()
	if down := h.unready(); down > maxDown {
		h.t.Fatalf("%d replicas missing or not Ready after a sync, want at most %d: %s", down, maxDown, h.describe())
	}
}

// runUntil steps until done holds, at most 60 rounds.
func (h *stuckHarness) runUntil(maxDown int, what string, done func() bool) {
	h.t.Helper()
	for i := 0; i < 60; i++ {
		if done() {
			return
		}
		h.step(maxDown)
	}
	if !done() {
		h.t.Fatalf("not %s after 60 rounds: %s", what, h.describe())
	}
}

// settled reports whether every replica exists and is Ready and the set's
// status says so.
func (h *stuckHarness) settled() bool {
	set := h.set()
	pods := h.pods()
	return len(pods) == int(*set.Spec.Replicas) && h.unready() == 0 &&
		set.Status.ReadyReplicas == *set.Spec.Replicas
}

func (h *stuckHarness) describe() string {
	set := h.set()
	var b strings.Builder
	fmt.Fprintf(&b, "status current=%s update=%s ready=%d updated=%d;", set.Status.CurrentRevision, set.Status.UpdateRevision,
		set.Status.ReadyReplicas, set.Status.UpdatedReplicas)
	for _, pod := range h.pods() {
		fmt.Fprintf(&b, " %s[%s %s ready=%v image=%s]", pod.Name, getPodRevision(pod), pod.Status.Phase,
			podutil.IsPodReady(pod), pod.Spec.Containers[0].Image)
	}
	return b.String()
}

func (h *stuckHarness) deleteRequests() int {
	return h.om.deletePodTracker.requests
}

// --- the rule, case by case -------------------------------------------------

type podState int

const (
	stateAbsent            podState = iota // placeholder without a phase, as updateStatefulSet makes
	stateNil                               // nil entry
	statePending                           // Pending (e.g. image pull back-off)
	stateCrashing                          // Running, Ready=False
	stateReady                             // Running, Ready, available
	stateReadyNotAvailable                 // Running, Ready for less than minReadySeconds
	stateTerminating                       // Running, not Ready, deletionTimestamp set
	stateFailed                            // Failed
)

type testReplica struct {
	revision string
	state    podState
}

func buildReplicas(set *apps.StatefulSet, specs []testReplica) []*v1.Pod {
	replicas := make([]*v1.Pod, len(specs))
	for i, spec := range specs {
		if spec.state == stateNil {
			continue
		}
		pod := newStatefulSetPod(set, getStartOrdinal(set)+i)
		setPodRevision(pod, spec.revision)
		ready := func(since time.Time) {
			pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.Time{Time: since}}}
		}
		switch spec.state {
		case statePending:
			pod.Status.Phase = v1.PodPending
		case stateCrashing:
			pod.Status.Phase = v1.PodRunning
			pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionFalse}}
		case stateReady:
			pod.Status.Phase = v1.PodRunning
			ready(testNow.Add(-time.Hour))
		case stateReadyNotAvailable:
			pod.Status.Phase = v1.PodRunning
			ready(testNow.Add(-time.Second))
		case stateTerminating:
			pod.Status.Phase = v1.PodRunning
			ts := metav1.NewTime(testNow)
			pod.DeletionTimestamp = &ts
		case stateFailed:
			pod.Status.Phase = v1.PodFailed
		}
		replicas[i] = pod
	}
	return replicas
}

func TestFindBrokenRolloutPod(t *testing.T) {
	const cur, upd, old = "foo-cur", "foo-upd", "foo-old"
	rev := func(name string) *apps.ControllerRevision {
		return &apps.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	r := func(revision string, state podState) testReplica { return testReplica{revision, state} }

	tests := []struct {
		name            string
		strategy        apps.StatefulSetUpdateStrategyType
		partition       *int32
		startOrdinal    int32
		minReadySeconds int32
		deleting        bool
		current, update string
		replicas        []testReplica
		want            int
	}{
		// Leftovers of an abandoned (fixed or reverted) rollout.
		{
			name:     "fixed template: crash-looping pod of the abandoned revision is replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:     2,
		},
		{
			name:     "fixed template: pod of the abandoned revision stuck Pending is replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, statePending)},
			want:     2,
		},
		{
			name:     "reverted template (current == update): pod of the broken revision is replaced",
			current:  cur,
			update:   cur,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:     2,
		},
		{
			name:     "abandoned revision below Ready pods of old revisions is replaced out of order",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(old, stateCrashing), r(old, stateReady)},
			want:     1,
		},
		{
			name:     "abandoned revision below a pod that does not exist yet is replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateAbsent)},
			want:     1,
		},
		{
			name:     "abandoned revision below a nil entry is replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(old, stateCrashing), r("", stateNil)},
			want:     1,
		},
		{
			name:     "pod without a revision label counts as abandoned",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r("", stateCrashing)},
			want:     2,
		},
		{
			name:     "two broken pods: only the highest, one per sync",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(old, stateCrashing), r(old, stateCrashing)},
			want:     2,
		},
		// What is left alone.
		{
			name:     "unhealthy pod at the update revision is left alone",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(upd, stateCrashing)},
			want:     -1,
		},
		{
			name:     "broken pod below an unhealthy pod at the update revision waits",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateCrashing)},
			want:     -1,
		},
		{
			name:            "broken pod below a pod that is not yet available waits",
			current:         cur,
			update:          upd,
			minReadySeconds: 30,
			replicas:        []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateReadyNotAvailable)},
			want:            -1,
		},
		{
			name:            "Ready pod of an abandoned revision within minReadySeconds is not broken",
			current:         cur,
			update:          upd,
			minReadySeconds: 30,
			replicas:        []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateReadyNotAvailable)},
			want:            -1,
		},
		{
			name:     "terminating pod is already going",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateTerminating)},
			want:     -1,
		},
		{
			name:     "failed pod is left to upstream's terminal-phase handling",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateFailed)},
			want:     -1,
		},
		{
			name:     "OnDelete is untouched",
			strategy: apps.OnDeleteStatefulSetStrategyType,
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:     -1,
		},
		{
			name:     "Recreate is untouched",
			strategy: apps.RecreateStatefulSetStrategyType,
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:     -1,
		},
		{
			name:     "set being deleted",
			deleting: true,
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:     -1,
		},
		// Partition.
		{
			name:      "pod held back by the partition is left alone",
			partition: ptrInt32(2),
			current:   cur,
			update:    upd,
			replicas:  []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateReady)},
			want:      -1,
		},
		{
			name:      "pod at the partition is replaced",
			partition: ptrInt32(1),
			current:   cur,
			update:    upd,
			replicas:  []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateReady)},
			want:      1,
		},
		{
			name:         "partition counts from ordinals.start",
			partition:    ptrInt32(1),
			startOrdinal: 5,
			current:      cur,
			update:       upd,
			replicas:     []testReplica{r(old, stateCrashing), r(cur, stateReady), r(upd, stateReady)},
			want:         -1,
		},
		{
			name:         "partition counts from ordinals.start, in range",
			partition:    ptrInt32(1),
			startOrdinal: 5,
			current:      cur,
			update:       upd,
			replicas:     []testReplica{r(cur, stateReady), r(old, stateCrashing), r(upd, stateReady)},
			want:         1,
		},
		{
			name:      "partition beyond replicas holds everything back",
			partition: ptrInt32(5),
			current:   cur,
			update:    upd,
			replicas:  []testReplica{r(cur, stateReady), r(cur, stateReady), r(old, stateCrashing)},
			want:      -1,
		},
		// Pods of the current revision: only the rolling update's next target.
		{
			name:     "current revision, next in line (all higher pods updated and available): replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateCrashing), r(upd, stateReady)},
			want:     1,
		},
		{
			name:     "current revision, single replica, template fixed (kubernetes#88896): replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateCrashing)},
			want:     0,
		},
		{
			name:     "current revision merely not Ready while the higher updated pod is not Ready yet: kept",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateCrashing), r(upd, statePending)},
			want:     -1,
		},
		{
			name:     "current revision not Ready, higher pod deleted for its update and not recreated yet (OrderedReady would recreate it only once this one is Ready): replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateCrashing), r(upd, stateAbsent)},
			want:     1,
		},
		{
			name:     "current revision not Ready, higher pod being deleted for its update: kept",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateReady), r(cur, stateCrashing), r(cur, stateTerminating)},
			want:     -1,
		},
		{
			name:     "current revision not Ready but not next in line (a higher pod still at the current revision): kept",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateCrashing), r(cur, stateReady), r(upd, stateReady)},
			want:     -1,
		},
		{
			name:     "first revision broken, higher pods never created (kubernetes#60164): replaced",
			current:  cur,
			update:   upd,
			replicas: []testReplica{r(cur, stateCrashing), r(upd, stateAbsent), r(upd, stateAbsent)},
			want:     0,
		},
		{
			name:     "no rollout: everything at the update revision",
			current:  upd,
			update:   upd,
			replicas: []testReplica{r(upd, stateReady), r(upd, stateCrashing), r(upd, stateReady)},
			want:     -1,
		},
	}
	for _, tc := range tests {
		for _, policy := range []apps.PodManagementPolicyType{apps.OrderedReadyPodManagement, apps.ParallelPodManagement} {
			t.Run(string(policy)+"/"+tc.name, func(t *testing.T) {
				set := newStatefulSet(int32(len(tc.replicas)))
				set.Spec.PodManagementPolicy = policy
				set.Spec.MinReadySeconds = tc.minReadySeconds
				if tc.startOrdinal != 0 {
					set.Spec.Ordinals = &apps.StatefulSetOrdinals{Start: tc.startOrdinal}
				}
				if tc.strategy != "" {
					set.Spec.UpdateStrategy.Type = tc.strategy
				}
				if tc.partition != nil {
					set.Spec.UpdateStrategy.RollingUpdate = &apps.RollingUpdateStatefulSetStrategy{Partition: tc.partition}
				}
				if tc.deleting {
					ts := metav1.NewTime(testNow)
					set.DeletionTimestamp = &ts
				}
				replicas := buildReplicas(set, tc.replicas)
				got, why := findBrokenRolloutPod(set, rev(tc.current), rev(tc.update), replicas, testNow)
				if got != tc.want {
					t.Fatalf("findBrokenRolloutPod = %d (%q), want %d", got, why, tc.want)
				}
				if got >= 0 && !strings.Contains(why, replicas[got].Name) {
					t.Errorf("explanation %q does not name pod %s", why, replicas[got].Name)
				}
				if got < 0 && why != "" {
					t.Errorf("explanation %q without a pod", why)
				}
			})
		}
	}
}

func ptrInt32(v int32) *int32 { return &v }

// --- whole scenarios through the controller ---------------------------------

// TestStatefulSetControlHealsBrokenRollout: a rolling update to a template
// whose pods never become Ready stops at the first replaced pod (as
// upstream); fixing the template, or reverting it, makes the controller
// replace that pod by itself and finish the rollout, never taking down a
// second replica.
func TestStatefulSetControlHealsBrokenRollout(t *testing.T) {
	tests := []struct {
		name        string
		policy      apps.PodManagementPolicyType
		brokenPhase v1.PodPhase
		rollback    bool // revert to goodImage instead of fixing forward to fixedImage
		partition   int32
		maxUnavail  bool // MaxUnavailableStatefulSet gate (on by default in 1.37)
	}{
		{name: "OrderedReady/fix/crash loop", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning, maxUnavail: true},
		{name: "OrderedReady/fix/image pull", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodPending, maxUnavail: true},
		{name: "OrderedReady/rollback/crash loop", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning, rollback: true, maxUnavail: true},
		{name: "OrderedReady/rollback/image pull", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodPending, rollback: true, maxUnavail: true},
		{name: "OrderedReady/fix/partition 1", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning, partition: 1, maxUnavail: true},
		{name: "OrderedReady/rollback/partition 1", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning, rollback: true, partition: 1, maxUnavail: true},
		{name: "OrderedReady/fix/MaxUnavailableStatefulSet off", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning},
		{name: "OrderedReady/rollback/MaxUnavailableStatefulSet off", policy: apps.OrderedReadyPodManagement, brokenPhase: v1.PodRunning, rollback: true},
		{name: "Parallel/fix/crash loop", policy: apps.ParallelPodManagement, brokenPhase: v1.PodRunning, maxUnavail: true},
		{name: "Parallel/fix/image pull", policy: apps.ParallelPodManagement, brokenPhase: v1.PodPending, maxUnavail: true},
		{name: "Parallel/rollback/crash loop", policy: apps.ParallelPodManagement, brokenPhase: v1.PodRunning, rollback: true, maxUnavail: true},
		{name: "Parallel/fix/partition 1", policy: apps.ParallelPodManagement, brokenPhase: v1.PodRunning, partition: 1, maxUnavail: true},
		{name: "Parallel/fix/MaxUnavailableStatefulSet off", policy: apps.ParallelPodManagement, brokenPhase: v1.PodRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.MaxUnavailableStatefulSet, tc.maxUnavail)
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = tc.policy
			set.Spec.UpdateStrategy.RollingUpdate = &apps.RollingUpdateStatefulSetStrategy{Partition: ptrInt32(tc.partition)}
			h := newStuckHarness(t, set, tc.brokenPhase)

			// 1. Bring the set up at the good revision.
			h.runUntil(3, "up", h.settled)
			goodRevision := h.set().Status.UpdateRevision
			if h.set().Status.CurrentRevision != goodRevision {
				t.Fatalf("set not settled at one revision: %s", h.describe())
			}

			// 2. Roll out a broken template: the highest pod is replaced by
			// one that never becomes Ready, and the rollout stops there, as
			// upstream. The broken pod is at the update revision, so the
			// recovery leaves it alone.
			h.setImage(brokenImage)
			for i := 0; i < 20; i++ {
				h.step(1)
			}
			brokenRevision := h.set().Status.UpdateRevision
			if brokenRevision == goodRevision {
				t.Fatalf("no new revision for the broken template")
			}
			pods := h.pods()
			if len(pods) != 3 {
				t.Fatalf("want 3 pods while stuck: %s", h.describe())
			}
			for i, pod := range pods {
				wantRev, wantReady := goodRevision, true
				if i == 2 {
					wantRev, wantReady = brokenRevision, false
				}
				if getPodRevision(pod) != wantRev || isRunningAndReady(pod) != wantReady {
					t.Fatalf("stuck state: pod %s want revision %s ready=%v: %s", pod.Name, wantRev, wantReady, h.describe())
				}
			}
			if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 0 {
				t.Fatalf("broken pod at the update revision was recreated: %v", ev)
			}

			// 3. Fix (or revert) the template. The very next sync deletes
			// the stuck pod and says why.
			targetImage := fixedImage
			if tc.rollback {
				targetImage = goodImage
			}
			h.setImage(targetImage)
			deletesBefore := h.deleteRequests()
			h.sync()
			if h.pod(2) != nil {
				t.Fatalf("stuck pod not deleted after the template was fixed: %s", h.describe())
			}
			if got := h.deleteRequests() - deletesBefore; got != 1 {
				t.Fatalf("%d pods deleted by the first sync after the fix, want 1", got)
			}
			ev := h.events.withReason(RecreatingBrokenPodReason)
			if len(ev) != 1 || ev[0].eventType != v1.EventTypeNormal || !strings.Contains(ev[0].message, "foo-2") ||
				!strings.Contains(ev[0].message, brokenRevision) {
				t.Fatalf("want one Normal %s event naming foo-2 and %s, got %+v", RecreatingBrokenPodReason, brokenRevision, ev)
			}
			updateRevision := h.set().Status.UpdateRevision
			if tc.rollback && updateRevision != goodRevision {
				t.Fatalf("rollback: update revision %s, want the good revision %s", updateRevision, goodRevision)
			}

			// 4. The rollout completes on its own, one replica down at a time.
			h.runUntil(1, "rolled out", func() bool {
				if !h.settled() {
					return false
				}
				for i, pod := range h.pods() {
					want := updateRevision
					if int32(i) < tc.partition {
						want = goodRevision
					}
					if getPodRevision(pod) != want {
						return false
					}
				}
				return true
			})
			for i, pod := range h.pods() {
				want := targetImage
				if int32(i) < tc.partition {
					want = goodImage
				}
				if got := pod.Spec.Containers[0].Image; got != want {
					t.Errorf("pod %s image %s, want %s", pod.Name, got, want)
				}
			}
			if tc.partition == 0 {
				if s := h.set().Status; s.CurrentRevision != updateRevision || s.UpdatedReplicas != 3 {
					t.Errorf("rollout not complete in status: %s", h.describe())
				}
			}
			// Only the stuck pod needed the recovery; the rest was the
			// ordinary rolling update.
			if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 1 {
				t.Errorf("want exactly one %s event, got %d: %+v", RecreatingBrokenPodReason, len(ev), ev)
			}
		})
	}
}

// TestStatefulSetControlBrokenRolloutRespectsPartition: a pod of an
// abandoned revision below the partition is never deleted.
func TestStatefulSetControlBrokenRolloutRespectsPartition(t *testing.T) {
	for _, policy := range []apps.PodManagementPolicyType{apps.OrderedReadyPodManagement, apps.ParallelPodManagement} {
		t.Run(string(policy), func(t *testing.T) {
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = policy
			set.Spec.UpdateStrategy.RollingUpdate = &apps.RollingUpdateStatefulSetStrategy{Partition: ptrInt32(0)}
			h := newStuckHarness(t, set, v1.PodRunning)
			h.runUntil(3, "up", h.settled)

			// Break the rollout with partition 2: pod 2 gets stuck.
			h.edit(func(set *apps.StatefulSet) { *set.Spec.UpdateStrategy.RollingUpdate.Partition = 2 })
			h.setImage(brokenImage)
			for i := 0; i < 10; i++ {
				h.step(1)
			}
			if pod := h.pod(2); pod == nil || pod.Spec.Containers[0].Image != brokenImage || isRunningAndReady(pod) {
				t.Fatalf("pod 2 not stuck on the broken template: %s", h.describe())
			}
			brokenPod := h.pod(2)

			// Fix the template but raise the partition above the stuck pod:
			// it is held back and must stay.
			h.edit(func(set *apps.StatefulSet) { *set.Spec.UpdateStrategy.RollingUpdate.Partition = 3 })
			h.setImage(fixedImage)
			deletes := h.deleteRequests()
			for i := 0; i < 10; i++ {
				h.step(1)
			}
			if pod := h.pod(2); pod == nil || getPodRevision(pod) != getPodRevision(brokenPod) {
				t.Fatalf("pod held back by the partition was replaced: %s", h.describe())
			}
			if h.deleteRequests() != deletes {
				t.Fatalf("%d pods deleted with every pod held back by the partition", h.deleteRequests()-deletes)
			}
			if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 0 {
				t.Fatalf("recovery ignored the partition: %+v", ev)
			}

			// Lower the partition to 2: now it is replaced.
			h.edit(func(set *apps.StatefulSet) { *set.Spec.UpdateStrategy.RollingUpdate.Partition = 2 })
			h.sync()
			if h.pod(2) != nil {
				t.Fatalf("stuck pod not deleted once the partition allows it: %s", h.describe())
			}
			h.runUntil(1, "rolled out", func() bool {
				p := h.pod(2)
				return h.settled() && p != nil && p.Spec.Containers[0].Image == fixedImage
			})
			for _, ordinal := range []int{0, 1} {
				if img := h.pod(ordinal).Spec.Containers[0].Image; img != goodImage {
					t.Errorf("pod %d below the partition has image %s, want %s", ordinal, img, goodImage)
				}
			}
		})
	}
}

// TestStatefulSetControlBrokenRolloutLeavesUpdateRevisionAlone: a pod at
// the update revision that never becomes Ready is never deleted, however
// long it stays broken.
func TestStatefulSetControlBrokenRolloutLeavesUpdateRevisionAlone(t *testing.T) {
	for _, policy := range []apps.PodManagementPolicyType{apps.OrderedReadyPodManagement, apps.ParallelPodManagement} {
		for _, phase := range []v1.PodPhase{v1.PodRunning, v1.PodPending} {
			t.Run(string(policy)+"/"+string(phase), func(t *testing.T) {
				set := newStatefulSet(3)
				set.Spec.PodManagementPolicy = policy
				h := newStuckHarness(t, set, phase)
				h.runUntil(3, "up", h.settled)
				h.setImage(brokenImage)
				for i := 0; i < 5; i++ {
					h.step(1)
				}
				stuck := h.pod(2)
				if stuck == nil || getPodRevision(stuck) != h.set().Status.UpdateRevision || isRunningAndReady(stuck) {
					t.Fatalf("want pod 2 stuck at the update revision: %s", h.describe())
				}
				deletes := h.deleteRequests()
				for i := 0; i < 30; i++ {
					h.step(1)
				}
				if pod := h.pod(2); pod == nil || pod.ResourceVersion != stuck.ResourceVersion {
					t.Fatalf("unhealthy pod at the update revision was touched: %s", h.describe())
				}
				if h.deleteRequests() != deletes {
					t.Fatalf("%d deletions while the update revision is broken", h.deleteRequests()-deletes)
				}
				if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 0 {
					t.Fatalf("unexpected %s events: %+v", RecreatingBrokenPodReason, ev)
				}
			})
		}
	}
}

// TestStatefulSetControlBrokenRolloutOnDeleteUntouched: with OnDelete the
// controller replaces nothing by itself, broken or not.
func TestStatefulSetControlBrokenRolloutOnDeleteUntouched(t *testing.T) {
	for _, policy := range []apps.PodManagementPolicyType{apps.OrderedReadyPodManagement, apps.ParallelPodManagement} {
		t.Run(string(policy), func(t *testing.T) {
			set := newStatefulSet(3)
			set.Spec.PodManagementPolicy = policy
			set.Spec.UpdateStrategy = apps.StatefulSetUpdateStrategy{Type: apps.OnDeleteStatefulSetStrategyType}
			h := newStuckHarness(t, set, v1.PodRunning)
			h.runUntil(3, "up", h.settled)

			// Broken template; the user deletes pod 2, which comes back
			// broken.
			h.setImage(brokenImage)
			if err := h.om.podsIndexer.Delete(h.pod(2)); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				h.step(1)
			}
			stuck := h.pod(2)
			if stuck == nil || stuck.Spec.Containers[0].Image != brokenImage || isRunningAndReady(stuck) {
				t.Fatalf("want pod 2 recreated broken: %s", h.describe())
			}

			// Fixing the template changes nothing under OnDelete.
			h.setImage(fixedImage)
			deletes := h.deleteRequests()
			for i := 0; i < 20; i++ {
				h.step(1)
			}
			if pod := h.pod(2); pod == nil || getPodRevision(pod) != getPodRevision(stuck) {
				t.Fatalf("OnDelete pod replaced by the controller: %s", h.describe())
			}
			for _, ordinal := range []int{0, 1} {
				if img := h.pod(ordinal).Spec.Containers[0].Image; img != goodImage {
					t.Fatalf("OnDelete pod %d updated to %s", ordinal, img)
				}
			}
			if h.deleteRequests() != deletes {
				t.Fatalf("%d deletions under OnDelete", h.deleteRequests()-deletes)
			}
			if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 0 {
				t.Fatalf("unexpected %s events under OnDelete: %+v", RecreatingBrokenPodReason, ev)
			}
		})
	}
}

// TestStatefulSetControlNormalRollingUpdateKeepsOrder: during an ordinary
// rolling update (good template) a pod of the current revision that is not
// Ready is not deleted while a higher ordinal is still being updated; it is
// only replaced once every higher pod is updated and Ready, i.e. when
// upstream would replace it next anyway.
func TestStatefulSetControlNormalRollingUpdateKeepsOrder(t *testing.T) {
	set := newStatefulSet(3)
	h := newStuckHarness(t, set, v1.PodRunning)
	h.runUntil(3, "up", h.settled)
	goodRevision := h.set().Status.UpdateRevision

	// Start a rolling update: pod 2 is deleted.
	h.setImage(fixedImage)
	h.sync()
	if h.pod(2) != nil {
		t.Fatalf("rolling update did not start with pod 2: %s", h.describe())
	}

	// Pod 2 is recreated at the update revision but is not Ready yet when
	// pod 1 (current revision) falters.
	s := h.set()
	deletes := h.deleteRequests()
	h.sync()    // pod 2 recreated
	h.kubelet() // pod 2: Pending
	h.kubelet() // pod 2: Running, not Ready yet
	if p := h.pod(2); p == nil || p.Status.Phase != v1.PodRunning || podutil.IsPodReady(p) {
		t.Fatalf("want pod 2 Running and not Ready: %s", h.describe())
	}
	if _, err := h.om.setPodReadyCondition(s, 1, false, testNow); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		h.sync()
	}
	if h.deleteRequests() != deletes || h.pod(1) == nil {
		t.Fatalf("pod 1 deleted while pod 2 was not Ready: %s", h.describe())
	}

	// Pod 0 (current revision, not next in line) falters while pod 2 is
	// updated and Ready and pod 1 is Ready: it is not touched, and the
	// OrderedReady rollout waits for it, as upstream.
	if _, err := h.om.setPodReadyCondition(s, 1, true, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := h.om.setPodReadyCondition(s, 2, true, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := h.om.setPodReadyCondition(s, 0, false, testNow); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		h.sync()
	}
	if h.deleteRequests() != deletes || h.pod(0) == nil || h.pod(1) == nil {
		t.Fatalf("pod deleted out of order while pod 0 is not Ready: %s", h.describe())
	}
	if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 0 {
		t.Fatalf("unexpected %s events: %+v", RecreatingBrokenPodReason, ev)
	}

	// Pod 0 recovers; the rolling update replaces pod 1 as usual.
	if _, err := h.om.setPodReadyCondition(s, 0, true, testNow); err != nil {
		t.Fatal(err)
	}
	h.sync()
	if h.pod(1) != nil {
		t.Fatalf("rolling update did not continue with pod 1: %s", h.describe())
	}
	h.runUntil(1, "pod 1 recreated", func() bool {
		p := h.pod(1)
		return p != nil && p.Status.Phase == v1.PodRunning
	})
	if got := getPodRevision(h.pod(1)); got != h.set().Status.UpdateRevision {
		t.Fatalf("pod 1 recreated at %s", got)
	}

	// Pod 1 becomes Ready as pod 0 falters: pod 0 is now next in line. Not
	// Ready, it is replaced without waiting for it to become Ready first.
	if got := getPodRevision(h.pod(0)); got != goodRevision {
		t.Fatalf("pod 0 already at %s", got)
	}
	if _, err := h.om.setPodReadyCondition(s, 1, true, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := h.om.setPodReadyCondition(s, 0, false, testNow); err != nil {
		t.Fatal(err)
	}
	h.sync()
	if h.pod(0) != nil {
		t.Fatalf("pod 0, next in line and not Ready, not replaced: %s", h.describe())
	}
	if ev := h.events.withReason(RecreatingBrokenPodReason); len(ev) != 1 || !strings.Contains(ev[0].message, "foo-0") {
		t.Fatalf("want one %s event for foo-0, got %+v", RecreatingBrokenPodReason, ev)
	}
	h.runUntil(1, "rolled out", func() bool {
		return h.settled() && h.set().Status.CurrentRevision == h.set().Status.UpdateRevision
	})
}
