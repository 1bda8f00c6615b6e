package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// hookServer records the lifecycle requests it gets; /fail answers 500.
type hookServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "<path> <user agent> <X-Hook header>"
}

func newHookServer(t *testing.T) *hookServer {
	s := &hookServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path+" "+r.UserAgent()+" "+r.Header.Get("X-Hook"))
		s.mu.Unlock()
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hookServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func execHook(cmd string) *corev1.LifecycleHandler {
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: strings.Fields(cmd)}}
}

func httpHook(path string, port int32) *corev1.LifecycleHandler {
	return &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path, Port: intstr.FromInt32(port), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Hook", Value: "yes"}},
	}}
}

func TestPostStartHook(t *testing.T) {
	srv := newHookServer(t)
	port := serverPort(t, srv.URL)
	for _, tc := range []struct {
		name        string
		hook        *corev1.LifecycleHandler
		reply       execReply
		policy      corev1.RestartPolicy
		wantFail    bool
		wantRequest string
	}{
		{name: "exec succeeds", hook: execHook("touch /started")},
		{name: "exec fails", hook: execHook("touch /started"), reply: execReply{code: 1, out: "read-only file system"}, wantFail: true},
		{name: "exec fails, never restarted", hook: execHook("touch /started"), reply: execReply{code: 1}, policy: corev1.RestartPolicyNever, wantFail: true},
		{name: "httpGet answered", hook: httpHook("/started", port), wantRequest: "/started kube-lifecycle/"},
		{name: "httpGet answered with an error status still succeeds", hook: httpHook("/fail", port), wantRequest: "/fail kube-lifecycle/"},
		{name: "httpGet unanswered", hook: httpHook("/started", closedPort(t)), wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := probed(func(c *corev1.Container) { c.Lifecycle = &corev1.Lifecycle{PostStart: tc.hook} })
			pod.Spec.RestartPolicy = tc.policy
			pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](4)
			h := newPodHarness(t, pod)
			h.rt.podIP = "127.0.0.1" // an httpGet hook's default host: the server above
			h.rt.reply("main", "touch /started", tc.reply)
			before := len(srv.requests())
			pod = h.sync("p")
			calls := h.rt.calls()
			if tc.hook.Exec != nil && !slices.Equal(calls[:3], []string{"sandbox p", "start main", "exec main touch /started"}) {
				t.Fatalf("runtime calls %q, want the hook run right after the start", calls)
			}
			if tc.wantRequest != "" {
				got := srv.requests()[before:]
				if len(got) != 1 || !strings.HasPrefix(got[0], tc.wantRequest) || !strings.HasSuffix(got[0], " yes") {
					t.Fatalf("server got %q, want one GET %s with the hook's header", got, tc.wantRequest)
				}
			}
			if !tc.wantFail {
				if slices.Contains(calls, "stop main grace=4s") || len(h.events.problems()) != 0 || mainStatus(t, pod).State.Running == nil {
					t.Fatalf("a hook that succeeded: calls %q events %q", calls, h.events.list())
				}
				return
			}
			if !slices.Contains(calls, "stop main grace=4s") {
				t.Fatalf("runtime calls %q, want the container killed after its hook failed", calls)
			}
			if h.events.count("FailedPostStartHook", "PostStartHook failed") != 1 || h.events.count("Killing", "FailedPostStartHook") != 1 {
				t.Fatalf("events %q, want FailedPostStartHook and Killing", h.events.list())
			}
			pod = h.sync("p")
			cs := mainStatus(t, pod)
			if tc.policy == corev1.RestartPolicyNever {
				if cs.State.Terminated == nil || pod.Status.Phase != corev1.PodFailed {
					t.Fatalf("phase %s state %+v, want the pod failed, its container not restarted", pod.Status.Phase, cs.State)
				}
				return
			}
			// Restarted by the pod's policy; the new run's hook fails too
			// and kills it in turn.
			if cs.RestartCount != 1 || countOf(h.rt.calls(), "start main") != 2 || h.events.count("FailedPostStartHook", "") != 2 {
				t.Fatalf("restartCount %d calls %q events %q, want one restart whose hook ran again", cs.RestartCount, h.rt.calls(), h.events.list())
			}
		})
	}
}

// markDeleted does what the API server does on `kubectl delete pod`.
func (h *podHarness) markDeleted(name string, grace int64) {
	h.t.Helper()
	ctx := context.Background()
	p, err := h.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To(grace)
	if _, err := h.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func TestPreStopHookOnDeletion(t *testing.T) {
	srv := newHookServer(t)
	for _, tc := range []struct {
		name      string
		hook      *corev1.LifecycleHandler
		reply     execReply
		grace     int64
		wantCalls []string
		wantEvent string
	}{{
		name: "exec, then SIGTERM", hook: execHook("/drain"), grace: 7,
		wantCalls: []string{"exec main /drain", "stop main grace=7s", "remove main", "remove-sandbox p"},
	}, {
		name: "exec fails: stopped all the same", hook: execHook("/drain"), reply: execReply{code: 2}, grace: 7,
		wantCalls: []string{"exec main /drain", "stop main grace=7s", "remove main", "remove-sandbox p"},
		wantEvent: "FailedPreStopHook",
	}, {
		name: "httpGet", hook: httpHook("/drain", serverPort(t, srv.URL)), grace: 7,
		wantCalls: []string{"stop main grace=7s", "remove main", "remove-sandbox p"},
	}, {
		name: "a short grace period is stretched to the minimum", hook: execHook("/drain"), grace: 1,
		wantCalls: []string{"exec main /drain", "stop main grace=2s", "remove main", "remove-sandbox p"},
	}, {
		name: "no grace period: no hook", hook: execHook("/drain"), grace: 0,
		wantCalls: []string{"stop main grace=0s", "remove main", "remove-sandbox p"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPodHarness(t, probed(func(c *corev1.Container) { c.Lifecycle = &corev1.Lifecycle{PreStop: tc.hook} }))
			h.rt.podIP = "127.0.0.1"
			h.rt.reply("main", "/drain", tc.reply)
			h.sync("p")
			h.markDeleted("p", tc.grace)
			before := len(srv.requests())
			if h.sync("p") != nil {
				t.Fatal("pod still in the API after its termination")
			}
			if got := h.rt.calls()[2:]; !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("runtime calls %q after the start, want %q", got, tc.wantCalls)
			}
			if tc.hook.HTTPGet != nil {
				if got := srv.requests()[before:]; len(got) != 1 || !strings.HasPrefix(got[0], "/drain kube-lifecycle/") {
					t.Fatalf("server got %q, want the preStop GET", got)
				}
			}
			if h.events.count("Killing", "Stopping container main") != 1 {
				t.Errorf("events %q, want Killing: Stopping container main", h.events.list())
			}
			if tc.wantEvent != "" && h.events.count(tc.wantEvent, "PreStopHook failed") != 1 {
				t.Errorf("events %q, want %s", h.events.list(), tc.wantEvent)
			}
		})
	}
}

func TestPreStopHookOutlastingTheGracePeriod(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) { c.Lifecycle = &corev1.Lifecycle{PreStop: execHook("/drain")} }))
	h.rt.reply("main", "/drain", execReply{block: true})
	h.sync("p")
	h.markDeleted("p", 5)
	ctx := context.Background()
	pod, _ := h.client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
	_ = h.factory.Core().V1().Pods().Informer().GetIndexer().Update(pod)

	done := make(chan error, 1)
	go func() { _, err := h.m.sync(ctx, "default/p"); done <- err }()
	deadline := time.Now().Add(30 * time.Second)
	for !h.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the preStop hook's grace period never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if slices.Contains(h.rt.calls(), "stop main grace=2s") {
		t.Fatal("stopped while the hook still had time")
	}
	h.clock.Step(5 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The hook used up the grace period; SIGTERM still gets the minimum.
	if !slices.Contains(h.rt.calls(), "stop main grace=2s") {
		t.Fatalf("runtime calls %q, want main stopped with the minimum grace once the hook's time was up", h.rt.calls())
	}
}

func TestPreStopHookOnLivenessKill(t *testing.T) {
	pod := probed(func(c *corev1.Container) {
		c.Lifecycle = &corev1.Lifecycle{PreStop: execHook("/drain")}
		c.LivenessProbe = &corev1.Probe{ProbeHandler: execProbe("alive", 0, 0).ProbeHandler, FailureThreshold: 1}
	})
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](9)
	h := newPodHarness(t, pod)
	h.rt.reply("main", "alive", failing)
	h.sync("p")
	h.probe()
	h.sync("p")
	want := []string{"sandbox p", "start main", "exec main alive", "exec main /drain", "stop main grace=9s", "remove main", "start main"}
	if got := h.rt.calls(); !slices.Equal(got, want) {
		t.Fatalf("runtime calls %q, want %q", got, want)
	}
}
