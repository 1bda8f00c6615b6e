package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/steadhq/stead/pkg/image"
)

// fakeRuntime runs nothing: the test says when containers exit and what
// commands run in them answer.
type fakeRuntime struct {
	mu         sync.Mutex
	clock      *clocktesting.FakeClock
	next       int
	podIP      string
	states     map[string]*ContainerState
	names      map[string]string // id → container name
	log        []string
	imageError map[string]*ImageError // by image
	replies    map[string]execReply   // by "<container> <command>"
	execs      []string               // "<container> <command>", as run
	// removeSandboxErr, when set, fails the next RemoveSandbox.
	removeSandboxErr error
	// ensureSandboxErr, when set, fails every EnsureSandbox.
	ensureSandboxErr error
}

// execReply is what a command run in a container answers; by default it
// exits 0 saying nothing. block makes it run until its context ends.
type execReply struct {
	code  int
	out   string
	err   error
	block bool
}

func newFakeRuntime(clock *clocktesting.FakeClock) *fakeRuntime {
	return &fakeRuntime{clock: clock, podIP: "10.42.0.7", states: map[string]*ContainerState{}, names: map[string]string{},
		imageError: map[string]*ImageError{}, replies: map[string]execReply{}}
}

func (f *fakeRuntime) record(format string, args ...any) {
	f.log = append(f.log, fmt.Sprintf(format, args...))
}

func (f *fakeRuntime) EnsureSandbox(_ context.Context, pod *corev1.Pod) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("sandbox %s", pod.Name)
	if f.ensureSandboxErr != nil {
		return "", f.ensureSandboxErr
	}
	return f.podIP, nil
}

func (f *fakeRuntime) RemoveSandbox(_ context.Context, pod *corev1.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-sandbox %s", pod.Name)
	if err := f.removeSandboxErr; err != nil {
		f.removeSandboxErr = nil // fails once
		return err
	}
	return nil
}

func (f *fakeRuntime) PullImage(_ context.Context, pod *corev1.Pod, c *corev1.Container, pulling func()) (ImagePull, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.imageError[c.Image]; err != nil {
		f.record("pull-failed %s", c.Name)
		return ImagePull{}, err
	}
	if c.ImagePullPolicy != corev1.PullAlways {
		return ImagePull{}, nil
	}
	pulling()
	return ImagePull{Image: image.Image{Ref: c.Image, Size: 4096}, Fetched: true, Duration: 1500 * time.Millisecond}, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, pod *corev1.Pod, c *corev1.Container, _ image.Image, podIP string, restarts int32) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := fmt.Sprintf("c%d", f.next)
	f.states[id] = &ContainerState{Running: true, StartedAt: f.clock.Now(), ImageID: "sha256:" + c.Image}
	f.names[id] = c.Name
	f.record("start %s", c.Name)
	return id, nil
}

func (f *fakeRuntime) ContainerState(_ context.Context, id string) (ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[id]
	if !ok {
		return ContainerState{}, fmt.Errorf("no container %s", id)
	}
	return *st, nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop %s grace=%s", f.names[id], grace)
	st := f.states[id]
	st.Running, st.ExitCode, st.FinishedAt = false, 137, f.clock.Now()
	return nil
}

func (f *fakeRuntime) RemoveContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove %s", f.names[id])
	delete(f.states, id)
	return nil
}

func (f *fakeRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, []byte, error) {
	f.mu.Lock()
	name, line := f.names[id], strings.Join(cmd, " ")
	st, ok := f.states[id]
	running := ok && st.Running
	reply := f.replies[name+" "+line]
	f.execs = append(f.execs, name+" "+line)
	f.record("exec %s %s", name, line)
	f.mu.Unlock()
	if !running {
		return -1, nil, fmt.Errorf("container %s is not running", id)
	}
	if reply.block {
		<-ctx.Done()
		return 137, nil, ctx.Err()
	}
	return reply.code, []byte(reply.out), reply.err
}

// reply sets what cmd, run in the named container, answers from now on.
func (f *fakeRuntime) reply(name, cmd string, r execReply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[name+" "+cmd] = r
}

// ran counts the runs of cmd in the named container.
func (f *fakeRuntime) ran(name, cmd string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return countOf(f.execs, name+" "+cmd)
}

func (f *fakeRuntime) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// exit makes the running container of that name exit with code.
func (f *fakeRuntime) exit(t *testing.T, name string, code int32) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, st := range f.states {
		if f.names[id] == name && st.Running {
			st.Running, st.ExitCode, st.FinishedAt = false, code, f.clock.Now()
			return
		}
	}
	t.Fatalf("no running container %s", name)
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

type podHarness struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	m       *PodManager
	rt      *fakeRuntime
	clock   *clocktesting.FakeClock
	events  *eventLog
}

// eventLog keeps the events the pod manager records.
type eventLog struct {
	mu     sync.Mutex
	events []recordedEvent
}

type recordedEvent struct {
	object                runtime.Object
	kind, reason, message string
}

func (e *eventLog) Event(object runtime.Object, kind, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, recordedEvent{object, kind, reason, message})
}

func (e *eventLog) Eventf(object runtime.Object, kind, reason, format string, args ...any) {
	e.Event(object, kind, reason, fmt.Sprintf(format, args...))
}

func (e *eventLog) AnnotatedEventf(object runtime.Object, _ map[string]string, kind, reason, format string, args ...any) {
	e.Eventf(object, kind, reason, format, args...)
}

// list is the events so far as "<type> <reason> <message>".
func (e *eventLog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.events))
	for i, ev := range e.events {
		out[i] = ev.kind + " " + ev.reason + " " + ev.message
	}
	return out
}

// problems is list without the events of containers starting as they
// should (image present or pulled, created, started).
func (e *eventLog) problems() []string {
	return slices.DeleteFunc(e.list(), func(ev string) bool {
		for _, ordinary := range []string{"Normal Pulling ", "Normal Pulled ", "Normal Created ", "Normal Started "} {
			if strings.HasPrefix(ev, ordinary) {
				return true
			}
		}
		return false
	})
}

// count is how many events so far have this reason and a message that
// begins with prefix.
func (e *eventLog) count(reason, prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if ev.reason == reason && strings.HasPrefix(ev.message, prefix) {
			n++
		}
	}
	return n
}

func newPodHarness(t *testing.T, pod *corev1.Pod) *podHarness {
	pod.Namespace, pod.Spec.NodeName = "default", "node-a"
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	client := fake.NewClientset(pod)
	factory := informers.NewSharedInformerFactory(client, 0)
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt := newFakeRuntime(clock)
	m := NewPodManager("node-a", "127.0.0.1", client, rt, factory.Core().V1().Pods())
	m.clock = clock
	events := &eventLog{}
	m.recorder = events
	// The test steps the probe workers itself (h.probe), at the fake
	// clock's time, rather than leave them to goroutines.
	m.prober.drive = func(context.Context, *probeWorker) {}
	return &podHarness{t: t, client: client, factory: factory, m: m, rt: rt, clock: clock, events: events}
}

// probe runs every probe that is due at the fake clock's time. A probe
// that settles can make others due at once (a startup probe's success),
// so workers are stepped until none has anything more to do.
func (h *podHarness) probe() {
	h.t.Helper()
	ctx := context.Background()
	for {
		h.m.prober.mu.Lock()
		workers := slices.Collect(maps.Values(h.m.prober.workers))
		h.m.prober.mu.Unlock()
		probed := false
		for _, w := range workers {
			before := w.lastProbe
			w.step(ctx)
			probed = probed || w.lastProbe != before
		}
		if !probed {
			return
		}
	}
}

// sync runs one pass over the pod as the API holds it now, and returns it
// as the pass left it.
func (h *podHarness) sync(name string) *corev1.Pod {
	h.t.Helper()
	ctx := context.Background()
	indexer := h.factory.Core().V1().Pods().Informer().GetIndexer()
	pod, err := h.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		_ = indexer.Update(pod)
	} else {
		_ = indexer.Delete(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}})
	}
	if _, err := h.m.sync(ctx, "default/"+name); err != nil {
		h.t.Fatalf("sync: %v", err)
	}
	pod, err = h.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return pod
}

func podWith(name string, init []string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
	for _, c := range init {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: c, Image: "busybox:1.28.4"})
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "nginx:1.9.1"})
	}
	return pod
}

func conditionStatus(pod *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestRunningPodStatus(t *testing.T) {
	h := newPodHarness(t, podWith("web-0", nil, "nginx", "sidecar"))
	pod := h.sync("web-0")
	if pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase = %s, want Running", pod.Status.Phase)
	}
	if pod.Status.PodIP != "10.42.0.7" || pod.Status.HostIP != "127.0.0.1" || pod.Status.StartTime == nil {
		t.Errorf("podIP %q hostIP %q startTime %v", pod.Status.PodIP, pod.Status.HostIP, pod.Status.StartTime)
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if got := conditionStatus(pod, ct); got != corev1.ConditionTrue {
			t.Errorf("condition %s = %q, want True", ct, got)
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil || !cs.Ready || !*cs.Started || cs.ContainerID == "" || cs.ImageID == "" {
			t.Errorf("container %s status %+v, want running, ready, started, with IDs", cs.Name, cs)
		}
	}
	// Another pass changes nothing: no status write.
	before := len(h.client.Actions())
	h.sync("web-0")
	for _, a := range h.client.Actions()[before:] {
		if a.GetVerb() == "update" {
			t.Errorf("unchanged pod written again: %v", a)
		}
	}
}

func TestInitContainersRunInOrder(t *testing.T) {
	h := newPodHarness(t, podWith("p", []string{"first", "second"}, "main"))
	pod := h.sync("p")
	if got := h.rt.log; !slices.Equal(got, []string{"sandbox p", "start first"}) {
		t.Fatalf("runtime calls %q, want only the first init container started", got)
	}
	if pod.Status.Phase != corev1.PodPending || conditionStatus(pod, corev1.PodInitialized) != corev1.ConditionFalse {
		t.Fatalf("phase %s initialized %s during init", pod.Status.Phase, conditionStatus(pod, corev1.PodInitialized))
	}
	if r := pod.Status.ContainerStatuses[0].State.Waiting; r == nil || r.Reason != "PodInitializing" {
		t.Errorf("main container state %+v, want waiting PodInitializing", pod.Status.ContainerStatuses[0].State)
	}
	h.sync("p")
	if countOf(h.rt.log, "start second") != 0 {
		t.Fatal("second init container started while the first runs")
	}
	h.rt.exit(t, "first", 0)
	h.sync("p")
	h.rt.exit(t, "second", 0)
	pod = h.sync("p")
	want := []string{"sandbox p", "start first", "start second", "start main"}
	if !slices.Equal(h.rt.log, want) {
		t.Fatalf("runtime calls %q, want %q", h.rt.log, want)
	}
	if pod.Status.Phase != corev1.PodRunning || conditionStatus(pod, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatalf("phase %s initialized %s after init", pod.Status.Phase, conditionStatus(pod, corev1.PodInitialized))
	}
}

func TestRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy      corev1.RestartPolicy
		exitCode    int32
		wantRestart bool
		wantPhase   corev1.PodPhase
	}{
		{corev1.RestartPolicyAlways, 0, true, corev1.PodRunning},
		{corev1.RestartPolicyAlways, 1, true, corev1.PodRunning},
		{corev1.RestartPolicyOnFailure, 0, false, corev1.PodSucceeded},
		{corev1.RestartPolicyOnFailure, 1, true, corev1.PodRunning},
		{corev1.RestartPolicyNever, 0, false, corev1.PodSucceeded},
		{corev1.RestartPolicyNever, 1, false, corev1.PodFailed},
	} {
		t.Run(fmt.Sprintf("%s exit %d", tc.policy, tc.exitCode), func(t *testing.T) {
			pod := podWith("p", nil, "main")
			pod.Spec.RestartPolicy = tc.policy
			h := newPodHarness(t, pod)
			h.sync("p")
			h.rt.exit(t, "main", tc.exitCode)
			pod = h.sync("p")
			if restarted := countOf(h.rt.log, "start main") == 2; restarted != tc.wantRestart {
				t.Fatalf("restarted = %v, want %v (calls %q)", restarted, tc.wantRestart, h.rt.log)
			}
			if pod.Status.Phase != tc.wantPhase {
				t.Fatalf("phase = %s, want %s", pod.Status.Phase, tc.wantPhase)
			}
			cs := pod.Status.ContainerStatuses[0]
			if tc.wantRestart {
				if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != tc.exitCode {
					t.Errorf("after restart: restartCount %d lastState %+v", cs.RestartCount, cs.LastTerminationState)
				}
			} else if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != tc.exitCode {
				t.Errorf("state %+v, want terminated with %d", cs.State, tc.exitCode)
			}
		})
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	h := newPodHarness(t, podWith("p", nil, "main"))
	h.sync("p")
	// First crash: restarted at once, as the kubelet does.
	h.rt.exit(t, "main", 1)
	h.sync("p")
	if n := countOf(h.rt.log, "start main"); n != 2 {
		t.Fatalf("starts after first crash = %d, want 2", n)
	}
	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		h.rt.exit(t, "main", 1)
		pod := h.sync("p")
		cs := pod.Status.ContainerStatuses[0]
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
			t.Fatalf("crash %d: state %+v, want waiting CrashLoopBackOff", i+2, cs.State)
		}
		if pod.Status.Phase != corev1.PodRunning {
			t.Errorf("crash-looping pod phase = %s, want Running", pod.Status.Phase)
		}
		starts := countOf(h.rt.log, "start main")
		h.clock.Step(wait - time.Second)
		h.sync("p")
		if n := countOf(h.rt.log, "start main"); n != starts {
			t.Fatalf("crash %d: restarted before its %v back-off", i+2, wait)
		}
		h.clock.Step(time.Second)
		pod = h.sync("p")
		if n := countOf(h.rt.log, "start main"); n != starts+1 {
			t.Fatalf("crash %d: not restarted after its %v back-off", i+2, wait)
		}
		if got := pod.Status.ContainerStatuses[0].RestartCount; got != int32(i+2) {
			t.Errorf("restartCount = %d, want %d", got, i+2)
		}
	}
}

func TestDeletionStopsProcessesBeforeThePodGoes(t *testing.T) {
	pod := podWith("web-0", nil, "nginx")
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](7)
	h := newPodHarness(t, pod)
	h.sync("web-0")

	// What the API server does on `kubectl delete pod`: mark, not remove.
	ctx := context.Background()
	p, _ := h.client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](7)
	if _, err := h.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.client.ClearActions()
	if got := h.sync("web-0"); got != nil {
		t.Fatal("pod still in the API after its termination")
	}
	want := []string{"sandbox web-0", "start nginx", "stop nginx grace=7s", "remove nginx", "remove-sandbox web-0"}
	if !slices.Equal(h.rt.log, want) {
		t.Fatalf("runtime calls %q, want %q", h.rt.log, want)
	}
	var deletes int
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "delete" {
			deletes++
		}
	}
	if deletes != 1 {
		t.Fatalf("pod deleted %d times, want once, after the stop", deletes)
	}
}

func TestImagePullFailure(t *testing.T) {
	h := newPodHarness(t, podWith("p", nil, "main"))
	h.rt.imageError["nginx:1.9.1"] = &ImageError{Reason: "ErrImagePull", Message: "manifest unknown"}
	pod := h.sync("p")
	w := pod.Status.ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != "ErrImagePull" || w.Message != "manifest unknown" || pod.Status.Phase != corev1.PodPending {
		t.Fatalf("phase %s waiting %+v, want Pending with ErrImagePull and the registry's message", pod.Status.Phase, w)
	}
	pod = h.sync("p")
	if w := pod.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ImagePullBackOff" {
		t.Fatalf("waiting %+v during back-off, want ImagePullBackOff", w)
	}
	delete(h.rt.imageError, "nginx:1.9.1")
	h.clock.Step(initialBackoff)
	if pod = h.sync("p"); pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase %s after the image became available, want Running", pod.Status.Phase)
	}
}

// A deletion whose sandbox could not be removed (a mount still busy) is
// retried to the end: the containers already removed are not looked for
// again, and the pod leaves the API once its sandbox is gone.
func TestTerminateRetriedAfterASandboxFailure(t *testing.T) {
	h := newPodHarness(t, podWith("web-0", nil, "main"))
	h.sync("web-0")
	ctx := context.Background()
	h.rt.mu.Lock()
	h.rt.removeSandboxErr = errors.New("unlinkat volumes/mem: device or resource busy")
	h.rt.mu.Unlock()
	pod, _ := h.client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	pod.DeletionTimestamp = &metav1.Time{Time: h.clock.Now()}
	pod.DeletionGracePeriodSeconds = ptr.To[int64](1)
	if _, err := h.client.CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = h.factory.Core().V1().Pods().Informer().GetIndexer().Update(pod)
	if _, err := h.m.sync(ctx, "default/web-0"); err == nil {
		t.Fatal("the first deletion pass succeeded despite the sandbox failure")
	}
	if _, err := h.m.sync(ctx, "default/web-0"); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if _, err := h.client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{}); err == nil {
		t.Error("the pod is still in the API after its sandbox was removed")
	}
	if n := countOf(h.rt.calls(), "remove main"); n != 1 {
		t.Errorf("container removed %d times, want once: %v", n, h.rt.calls())
	}
}

// The node records the kubelet's events for each step of a container's
// start, in the kubelet's words, so that `kubectl describe pod` tells what
// happened.
func TestContainerLifecycleEvents(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pod   func(*corev1.Pod)
		setup func(*fakeRuntime)
		steps func(*podHarness)
		want  []string
	}{{
		name: "image present",
		want: []string{
			`Normal Pulled Container image "nginx:1.9.1" already present on machine`,
			"Normal Created Container created",
			"Normal Started Container started",
		},
	}, {
		name: "image pulled",
		pod:  func(p *corev1.Pod) { p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways },
		want: []string{
			`Normal Pulling Pulling image "nginx:1.9.1"`,
			`Normal Pulled Successfully pulled image "nginx:1.9.1" in 1.5s (1.5s including waiting). Image size: 4096 bytes.`,
			"Normal Created Container created",
			"Normal Started Container started",
		},
	}, {
		name: "pull fails, then backs off",
		setup: func(rt *fakeRuntime) {
			rt.imageError["nginx:1.9.1"] = &ImageError{Reason: "ErrImagePull", Message: "manifest unknown"}
		},
		steps: func(h *podHarness) { h.sync("p") },
		want: []string{
			`Warning Failed Failed to pull image "nginx:1.9.1": manifest unknown`,
			"Warning Failed Error: ErrImagePull",
			`Normal BackOff Back-off pulling image "nginx:1.9.1"`,
		},
	}, {
		name: "pull policy Never, image absent",
		setup: func(rt *fakeRuntime) {
			rt.imageError["nginx:1.9.1"] = &ImageError{Reason: "ErrImageNeverPull", Message: "not present"}
		},
		want: []string{
			`Warning ErrImageNeverPull Container image "nginx:1.9.1" is not present with pull policy of Never`,
			"Warning Failed Error: ErrImageNeverPull",
		},
	}, {
		name: "crash loop",
		steps: func(h *podHarness) {
			h.rt.exit(h.t, "main", 1) // restarted at once
			h.sync("p")
			h.rt.exit(h.t, "main", 1) // now backs off
			h.sync("p")
		},
		want: []string{
			`Normal Pulled Container image "nginx:1.9.1" already present on machine`,
			"Normal Created Container created",
			"Normal Started Container started",
			`Normal Pulled Container image "nginx:1.9.1" already present on machine`,
			"Normal Created Container created",
			"Normal Started Container started",
			"Warning BackOff Back-off restarting failed container main in pod p_default(uid-p)",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			pod := podWith("p", nil, "main")
			if tc.pod != nil {
				tc.pod(pod)
			}
			h := newPodHarness(t, pod)
			if tc.setup != nil {
				tc.setup(h.rt)
			}
			h.sync("p")
			if tc.steps != nil {
				tc.steps(h)
			}
			if got := h.events.list(); !slices.Equal(got, tc.want) {
				t.Errorf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// An ephemeral container (`kubectl debug`) added to a running pod starts
// once, is reported in ephemeralContainerStatuses, never counts for the
// pod's readiness, and is not restarted when it exits, whatever the pod's
// restart policy.
func TestEphemeralContainers(t *testing.T) {
	h := newPodHarness(t, podWith("web-0", nil, "nginx"))
	pod := h.sync("web-0")
	if conditionStatus(pod, corev1.PodReady) != corev1.ConditionTrue {
		t.Fatalf("pod not Ready before the debug container: %+v", pod.Status.Conditions)
	}
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox:1.28.4", Stdin: true, TTY: true},
		TargetContainerName:      "nginx",
	}}
	if _, err := h.client.CoreV1().Pods("default").Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod = h.sync("web-0")
	if n := countOf(h.rt.calls(), "start debugger"); n != 1 {
		t.Fatalf("debugger started %d times, want once: %q", n, h.rt.calls())
	}
	if len(pod.Status.EphemeralContainerStatuses) != 1 {
		t.Fatalf("ephemeralContainerStatuses %+v, want the debugger's", pod.Status.EphemeralContainerStatuses)
	}
	cs := pod.Status.EphemeralContainerStatuses[0]
	if cs.Name != "debugger" || cs.State.Running == nil || cs.Ready || !strings.HasPrefix(cs.ContainerID, "stead://") {
		t.Errorf("debugger status %+v, want running, not ready, with its container ID", cs)
	}
	if len(pod.Status.ContainerStatuses) != 1 || conditionStatus(pod, corev1.PodReady) != corev1.ConditionTrue {
		t.Errorf("the debugger changed the pod's own containers or readiness: %+v", pod.Status)
	}
	if n := h.events.count("Started", "Container started"); n != 2 {
		t.Errorf("events %q, want a Started for nginx and one for the debugger", h.events.list())
	}

	h.rt.exit(t, "debugger", 0)
	h.clock.Step(time.Minute)
	pod = h.sync("web-0")
	pod = h.sync("web-0")
	if n := countOf(h.rt.calls(), "start debugger"); n != 1 {
		t.Errorf("debugger started %d times, want once: an ephemeral container is never restarted", n)
	}
	if st := pod.Status.EphemeralContainerStatuses[0].State; st.Terminated == nil || st.Terminated.ExitCode != 0 {
		t.Errorf("debugger state after its exit %+v, want terminated with code 0", st)
	}
	if pod.Status.Phase != corev1.PodRunning || conditionStatus(pod, corev1.PodReady) != corev1.ConditionTrue {
		t.Errorf("pod phase %s, Ready %s after the debugger exited, want Running and Ready", pod.Status.Phase, conditionStatus(pod, corev1.PodReady))
	}
}

// A pod whose sandbox cannot be made says why in an event, as the
// kubelet's FailedCreatePodSandBox, not only in the node's log.
func TestSandboxFailureIsAnEvent(t *testing.T) {
	h := newPodHarness(t, podWith("p", nil, "main"))
	h.rt.ensureSandboxErr = errors.New("hostNetwork pods are not supported yet")
	pod, err := h.client.CoreV1().Pods("default").Get(context.Background(), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = h.factory.Core().V1().Pods().Informer().GetIndexer().Add(pod)
	if _, err := h.m.sync(context.Background(), "default/p"); err == nil {
		t.Fatal("sync succeeded without a sandbox")
	}
	want := []string{"Warning FailedCreatePodSandBox Failed to create pod sandbox: hostNetwork pods are not supported yet"}
	if got := h.events.list(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
