package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// probed is a pod of one container, main, with what set gives it.
func probed(set func(c *corev1.Container)) *corev1.Pod {
	pod := podWith("p", nil, "main")
	set(&pod.Spec.Containers[0])
	return pod
}

func execProbe(cmd string, period, delay int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: strings.Fields(cmd)}},
		PeriodSeconds:       period,
		InitialDelaySeconds: delay,
	}
}

func mainStatus(t *testing.T, pod *corev1.Pod) corev1.ContainerStatus {
	t.Helper()
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "main" {
			return cs
		}
	}
	t.Fatalf("no status for container main in %+v", pod.Status)
	return corev1.ContainerStatus{}
}

var (
	failing = execReply{code: 1, out: "not ready"}
	passing = execReply{}
)

func TestReadinessProbe(t *testing.T) {
	type step struct {
		after     time.Duration // since the previous step
		reply     *execReply    // from this step on; nil keeps the last
		wantReady bool
		wantRuns  int // of the probe's command, so far
	}
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		steps []step
	}{{
		name:  "without a probe a running container is ready",
		steps: []step{{wantReady: true}},
	}, {
		name:  "the first probe runs as soon as the container has started",
		probe: execProbe("check", 10, 0),
		steps: []step{{reply: &passing, wantReady: true, wantRuns: 1}, {after: 9 * time.Second, wantReady: true, wantRuns: 1}},
	}, {
		name:  "the first probe runs when the initial delay has passed, not a period later",
		probe: execProbe("check", 10, 5),
		steps: []step{
			{reply: &passing, wantRuns: 0},
			{after: 4 * time.Second, wantRuns: 0},
			{after: time.Second, wantReady: true, wantRuns: 1},
			{after: 9 * time.Second, wantReady: true, wantRuns: 1},
			{after: time.Second, wantReady: true, wantRuns: 2},
		},
	}, {
		name:  "ready after successThreshold successes in a row",
		probe: &corev1.Probe{ProbeHandler: execProbe("check", 0, 0).ProbeHandler, PeriodSeconds: 5, SuccessThreshold: 3},
		steps: []step{
			{reply: &passing, wantRuns: 1},
			{after: 5 * time.Second, reply: &failing, wantRuns: 2},
			{after: 5 * time.Second, reply: &passing, wantRuns: 3},
			{after: 5 * time.Second, wantRuns: 4},
			{after: 5 * time.Second, wantReady: true, wantRuns: 5},
		},
	}, {
		name:  "unready after failureThreshold failures in a row, and ready again",
		probe: &corev1.Probe{ProbeHandler: execProbe("check", 0, 0).ProbeHandler, PeriodSeconds: 5, FailureThreshold: 3},
		steps: []step{
			{reply: &passing, wantReady: true, wantRuns: 1},
			{after: 5 * time.Second, reply: &failing, wantReady: true, wantRuns: 2},
			{after: 5 * time.Second, wantReady: true, wantRuns: 3},
			{after: 5 * time.Second, reply: &passing, wantReady: true, wantRuns: 4},
			{after: 5 * time.Second, reply: &failing, wantReady: true, wantRuns: 5},
			{after: 5 * time.Second, wantReady: true, wantRuns: 6},
			{after: 5 * time.Second, wantReady: false, wantRuns: 7},
			{after: 5 * time.Second, wantReady: false, wantRuns: 8},
			{after: 5 * time.Second, reply: &passing, wantReady: true, wantRuns: 9},
		},
	}, {
		name:  "the API's defaults: every 10s, unready after 3 failures",
		probe: &corev1.Probe{ProbeHandler: execProbe("check", 0, 0).ProbeHandler},
		steps: []step{
			{reply: &passing, wantReady: true, wantRuns: 1},
			{after: 9 * time.Second, reply: &failing, wantReady: true, wantRuns: 1},
			{after: time.Second, wantReady: true, wantRuns: 2},
			{after: 10 * time.Second, wantReady: true, wantRuns: 3},
			{after: 10 * time.Second, wantReady: false, wantRuns: 4},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPodHarness(t, probed(func(c *corev1.Container) { c.ReadinessProbe = tc.probe }))
			pod := h.sync("p")
			if tc.probe != nil && (mainStatus(t, pod).Ready || conditionStatus(pod, corev1.PodReady) != corev1.ConditionFalse) {
				t.Fatal("ready before its readiness probe ran")
			}
			reply := passing
			failures := 0
			for i, s := range tc.steps {
				h.clock.Step(s.after)
				if s.reply != nil {
					reply = *s.reply
				}
				h.rt.reply("main", "check", reply)
				runs := h.rt.ran("main", "check")
				h.probe()
				if h.rt.ran("main", "check") > runs && reply.code != 0 {
					failures++
				}
				pod = h.sync("p")
				cs := mainStatus(t, pod)
				if cs.Ready != s.wantReady {
					t.Fatalf("step %d: ready = %v, want %v", i, cs.Ready, s.wantReady)
				}
				want := corev1.ConditionFalse
				if s.wantReady {
					want = corev1.ConditionTrue
				}
				if got, got2 := conditionStatus(pod, corev1.PodReady), conditionStatus(pod, corev1.ContainersReady); got != want || got2 != want {
					t.Fatalf("step %d: Ready condition %s, ContainersReady %s, want %s", i, got, got2, want)
				}
				if n := h.rt.ran("main", "check"); n != s.wantRuns {
					t.Fatalf("step %d: probe ran %d times, want %d", i, n, s.wantRuns)
				}
				if !ptr.Deref(cs.Started, false) {
					t.Fatalf("step %d: started = false for a running container without a startup probe", i)
				}
			}
			if n := h.events.count("Unhealthy", "Readiness probe failed: not ready"); n != failures {
				t.Errorf("%d Unhealthy events, want one per failed probe (%d): %q", n, failures, h.events.list())
			}
		})
	}
}

func TestStartupProbeGatesTheOthers(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) {
		c.StartupProbe = &corev1.Probe{ProbeHandler: execProbe("started", 0, 0).ProbeHandler, PeriodSeconds: 1, FailureThreshold: 10}
		c.ReadinessProbe = execProbe("ready", 10, 0)
		c.LivenessProbe = execProbe("alive", 10, 0)
	}))
	h.rt.reply("main", "started", failing)
	pod := h.sync("p")
	for i := range 3 {
		h.probe()
		pod = h.sync("p")
		cs := mainStatus(t, pod)
		if ptr.Deref(cs.Started, true) || cs.Ready {
			t.Fatalf("before the startup probe succeeded: started %v ready %v", ptr.Deref(cs.Started, true), cs.Ready)
		}
		if n := h.rt.ran("main", "started"); n != i+1 {
			t.Fatalf("startup probe ran %d times, want %d", n, i+1)
		}
		h.clock.Step(time.Second)
	}
	if h.rt.ran("main", "ready")+h.rt.ran("main", "alive") != 0 {
		t.Fatalf("readiness or liveness probed before the container started: %q", h.rt.execs)
	}
	if h.events.count("Unhealthy", "Startup probe failed: not ready") != 3 {
		t.Errorf("events %q, want an Unhealthy one per failed startup probe", h.events.list())
	}

	// Started: the others run at once, not a period later.
	h.rt.reply("main", "started", passing)
	h.probe()
	if h.rt.ran("main", "ready") != 1 || h.rt.ran("main", "alive") != 1 {
		t.Fatalf("readiness ran %d, liveness %d times right after the start, want once each", h.rt.ran("main", "ready"), h.rt.ran("main", "alive"))
	}
	pod = h.sync("p")
	if cs := mainStatus(t, pod); !ptr.Deref(cs.Started, false) || !cs.Ready || conditionStatus(pod, corev1.PodReady) != corev1.ConditionTrue {
		t.Fatalf("after the start: started %v ready %v Ready condition %s", ptr.Deref(cs.Started, false), cs.Ready, conditionStatus(pod, corev1.PodReady))
	}
	h.clock.Step(10 * time.Second)
	h.probe()
	if n := h.rt.ran("main", "started"); n != 4 {
		t.Errorf("startup probe ran %d times, want no more once it succeeded", n)
	}
	if h.rt.ran("main", "ready") != 2 || h.rt.ran("main", "alive") != 2 {
		t.Errorf("readiness ran %d, liveness %d times a period later, want twice each", h.rt.ran("main", "ready"), h.rt.ran("main", "alive"))
	}
}

func TestStartupProbeFailureRestarts(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) {
		c.StartupProbe = &corev1.Probe{ProbeHandler: execProbe("started", 0, 0).ProbeHandler, PeriodSeconds: 1, FailureThreshold: 2}
	}))
	h.rt.reply("main", "started", failing)
	h.sync("p")
	h.probe()
	h.clock.Step(time.Second)
	h.probe()
	pod := h.sync("p")
	if !slices.Contains(h.rt.calls(), "stop main grace=30s") {
		t.Fatalf("runtime calls %q, want main stopped after failureThreshold startup failures", h.rt.calls())
	}
	if n := h.events.count("Killing", "Container main failed startup probe, will be restarted"); n != 1 {
		t.Errorf("events %q, want one Killing for the startup probe", h.events.list())
	}
	cs := mainStatus(t, pod)
	if cs.RestartCount != 1 || cs.State.Running == nil || ptr.Deref(cs.Started, true) {
		t.Fatalf("after the kill: restartCount %d state %+v started %v, want a new run, not started", cs.RestartCount, cs.State, ptr.Deref(cs.Started, true))
	}
	// The new run is probed afresh.
	h.rt.reply("main", "started", passing)
	h.probe()
	if cs := mainStatus(t, h.sync("p")); !ptr.Deref(cs.Started, false) || !cs.Ready {
		t.Fatalf("new run after a passing startup probe: started %v ready %v", ptr.Deref(cs.Started, false), cs.Ready)
	}
}

func TestLivenessProbeKillsAndRestarts(t *testing.T) {
	for _, tc := range []struct {
		policy      corev1.RestartPolicy
		wantRestart bool
		wantMessage string
		wantPhase   corev1.PodPhase
	}{
		{corev1.RestartPolicyAlways, true, "Container main failed liveness probe, will be restarted", corev1.PodRunning},
		{corev1.RestartPolicyOnFailure, true, "Container main failed liveness probe, will be restarted", corev1.PodRunning},
		{corev1.RestartPolicyNever, false, "Container main failed liveness probe", corev1.PodFailed},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			pod := probed(func(c *corev1.Container) {
				c.LivenessProbe = &corev1.Probe{
					ProbeHandler: execProbe("alive", 0, 0).ProbeHandler, PeriodSeconds: 5, FailureThreshold: 2,
					TerminationGracePeriodSeconds: ptr.To[int64](3),
				}
			})
			pod.Spec.RestartPolicy = tc.policy
			pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](20)
			h := newPodHarness(t, pod)
			h.rt.reply("main", "alive", execReply{code: 1, out: "dead"})
			h.sync("p")
			h.probe()
			pod = h.sync("p")
			if countOf(h.rt.calls(), "stop main grace=3s") != 0 || mainStatus(t, pod).RestartCount != 0 {
				t.Fatal("killed after one failure; failureThreshold is 2")
			}
			h.clock.Step(5 * time.Second)
			h.probe()
			if h.m.queue.Len() == 0 {
				t.Fatal("the liveness failure did not queue the pod for a sync")
			}
			pod = h.sync("p")
			// The probe's own grace period overrides the pod's.
			if !slices.Contains(h.rt.calls(), "stop main grace=3s") {
				t.Fatalf("runtime calls %q, want main stopped with the probe's grace period", h.rt.calls())
			}
			if n := h.events.count("Unhealthy", "Liveness probe failed: dead"); n != 2 {
				t.Errorf("%d Unhealthy liveness events, want 2: %q", n, h.events.list())
			}
			if n := h.events.count("Killing", tc.wantMessage); n != 1 || h.events.count("Killing", tc.wantMessage+",") != 0 {
				t.Errorf("events %q, want one Killing %q", h.events.list(), tc.wantMessage)
			}
			cs := mainStatus(t, pod)
			if pod.Status.Phase != tc.wantPhase {
				t.Errorf("phase %s, want %s", pod.Status.Phase, tc.wantPhase)
			}
			if !tc.wantRestart {
				if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 137 || countOf(h.rt.calls(), "start main") != 1 {
					t.Fatalf("state %+v, want terminated by the kill and not restarted", cs.State)
				}
				return
			}
			if cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 137 {
				t.Fatalf("restartCount %d state %+v lastState %+v, want restarted once after a kill", cs.RestartCount, cs.State, cs.LastTerminationState)
			}
			// The new run is alive until its own probes fail: none ran on
			// the killed one, and the new one starts from scratch.
			runs := h.rt.ran("main", "alive")
			h.probe()
			if h.rt.ran("main", "alive") != runs+1 {
				t.Fatal("the new run was not probed at once")
			}
			if mainStatus(t, h.sync("p")).RestartCount != 1 {
				t.Fatal("new run killed after one failure")
			}
			// It fails again: killed again, and now restarted after the
			// crash-loop back-off, as any container that keeps failing.
			h.clock.Step(5 * time.Second)
			h.probe()
			cs = mainStatus(t, h.sync("p"))
			if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || cs.RestartCount != 1 {
				t.Fatalf("after the second kill: state %+v restartCount %d, want CrashLoopBackOff", cs.State, cs.RestartCount)
			}
			h.clock.Step(initialBackoff)
			if cs = mainStatus(t, h.sync("p")); cs.RestartCount != 2 || cs.State.Running == nil {
				t.Fatalf("after the back-off: state %+v restartCount %d, want running, restarted twice", cs.State, cs.RestartCount)
			}
		})
	}
}

func TestProbeResultQueuesThePod(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) { c.ReadinessProbe = execProbe("check", 1, 0) }))
	h.sync("p")
	drain := func() int {
		n := h.m.queue.Len()
		for range n {
			key, _ := h.m.queue.Get()
			h.m.queue.Done(key)
		}
		return n
	}
	drain()
	h.probe()
	if n := drain(); n != 1 {
		t.Fatalf("readiness turning true queued %d syncs, want 1", n)
	}
	h.clock.Step(time.Second)
	h.probe()
	if n := drain(); n != 0 {
		t.Fatalf("an unchanged result queued %d syncs, want none", n)
	}
}

func TestAdoptedContainerKeepsItsReadiness(t *testing.T) {
	pod := probed(func(c *corev1.Container) {
		c.StartupProbe = execProbe("started", 1, 0)
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: execProbe("check", 0, 0).ProbeHandler, PeriodSeconds: 1, FailureThreshold: 2}
	})
	// What an earlier stead ran and reported.
	pod.Status = corev1.PodStatus{PodIP: "10.42.0.7", ContainerStatuses: []corev1.ContainerStatus{{
		Name: "main", ContainerID: "stead://c9", Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}}}
	h := newPodHarness(t, pod)
	h.rt.states["c9"] = &ContainerState{Running: true, StartedAt: h.clock.Now().Add(-time.Hour)}
	h.rt.names["c9"] = "main"
	pod = h.sync("p")
	if cs := mainStatus(t, pod); !cs.Ready || !ptr.Deref(cs.Started, false) || countOf(h.rt.calls(), "start main") != 0 {
		t.Fatalf("adopted container: ready %v started %v calls %q, want it kept ready and started", cs.Ready, ptr.Deref(cs.Started, false), h.rt.calls())
	}
	// Its probes still decide from now on.
	h.rt.reply("main", "check", failing)
	h.probe()
	h.clock.Step(time.Second)
	h.probe()
	if cs := mainStatus(t, h.sync("p")); cs.Ready {
		t.Fatal("adopted container still ready after failureThreshold failures")
	}
}

func TestProbeHandlers(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "yes" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
			http.Error(w, "who are you", http.StatusForbidden)
		}
	})
	plain := httptest.NewServer(mux)
	defer plain.Close()
	secure := httptest.NewTLSServer(mux) // a certificate nobody can verify
	defer secure.Close()
	grpcPort := serveGRPCHealth(t)
	closed := closedPort(t)
	plainPort, securePort := serverPort(t, plain.URL), serverPort(t, secure.URL)

	header := []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}}
	httpGet := func(scheme corev1.URIScheme, port intstr.IntOrString, h []corev1.HTTPHeader) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Scheme: scheme, Path: "/healthz", Port: port, HTTPHeaders: h}}
	}
	tcp := func(port intstr.IntOrString) corev1.ProbeHandler {
		return corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}
	}
	for _, tc := range []struct {
		name      string
		handler   corev1.ProbeHandler
		reply     *execReply // for exec probes
		wantReady bool
		wantEvent string // an Unhealthy event's message begins so
		wantRuns  int    // of an exec probe's command
	}{
		{name: "exec exits 0", handler: execProbe("cat /tmp/ready", 0, 0).ProbeHandler, reply: &execReply{}, wantReady: true, wantRuns: 1},
		{name: "exec exits 1", handler: execProbe("cat /tmp/ready", 0, 0).ProbeHandler, reply: &execReply{code: 1, out: "cat: can't open '/tmp/ready'"},
			wantEvent: "Readiness probe failed: cat: can't open '/tmp/ready'", wantRuns: 1},
		{name: "exec times out", handler: execProbe("sleep 9", 0, 0).ProbeHandler,
			reply:     &execReply{code: 137, err: &execTimeoutError{cmd: []string{"sleep", "9"}, timeout: time.Second}},
			wantEvent: `Readiness probe failed: command "sleep 9" timed out after 1s`, wantRuns: 1},
		{name: "exec cannot run: retried, then no result", handler: execProbe("cat /tmp/ready", 0, 0).ProbeHandler, reply: &execReply{err: errors.New("no such process")},
			wantEvent: "Readiness probe errored and resulted in unknown state: no such process", wantRuns: 3},
		{name: "exec expands the container's literal env", handler: execProbe("cat $(FILE)", 0, 0).ProbeHandler, reply: &execReply{}, wantReady: true},
		{name: "httpGet with path and headers", handler: httpGet("", intstr.FromInt32(plainPort), header), wantReady: true},
		{name: "httpGet without the header the server wants", handler: httpGet(corev1.URISchemeHTTP, intstr.FromInt32(plainPort), nil),
			wantEvent: "Readiness probe failed: HTTP probe failed with statuscode: 403"},
		{name: "httpGet to a named port", handler: httpGet(corev1.URISchemeHTTP, intstr.FromString("web"), header), wantReady: true},
		{name: "httpGet HTTPS, unverified", handler: httpGet(corev1.URISchemeHTTPS, intstr.FromInt32(securePort), header), wantReady: true},
		{name: "httpGet to a closed port", handler: httpGet("", intstr.FromInt32(closed), header), wantEvent: "Readiness probe failed: Get \"http://127.0.0.1:"},
		{name: "httpGet to an unknown port name", handler: httpGet("", intstr.FromString("nope"), header), wantEvent: `Readiness probe errored and resulted in unknown state: port "nope" not found`},
		{name: "tcpSocket open", handler: tcp(intstr.FromInt32(plainPort)), wantReady: true},
		{name: "tcpSocket to a named port", handler: tcp(intstr.FromString("web")), wantReady: true},
		{name: "tcpSocket closed", handler: tcp(intstr.FromInt32(closed)), wantEvent: "Readiness probe failed: dial tcp 127.0.0.1:" + strconv.Itoa(int(closed))},
		{name: "grpc serving", handler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}}, wantReady: true},
		{name: "grpc not serving", handler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort, Service: ptr.To("down")}},
			wantEvent: `Readiness probe failed: service unhealthy (responded with "NOT_SERVING")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPodHarness(t, probed(func(c *corev1.Container) {
				c.ReadinessProbe = &corev1.Probe{ProbeHandler: tc.handler, FailureThreshold: 1}
				c.Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: plainPort}}
				c.Env = []corev1.EnvVar{{Name: "FILE", Value: "/tmp/ready"}}
			}))
			h.rt.podIP = "127.0.0.1" // the probes' default host: the servers above
			if tc.reply != nil {
				cmd := strings.Join(tc.handler.Exec.Command, " ")
				if strings.Contains(cmd, "$(FILE)") {
					cmd = "cat /tmp/ready"
				}
				h.rt.reply("main", cmd, *tc.reply)
				defer func() {
					if n := h.rt.ran("main", cmd); tc.wantRuns > 0 && n != tc.wantRuns {
						t.Errorf("%q ran %d times, want %d", cmd, n, tc.wantRuns)
					}
				}()
			}
			h.sync("p")
			h.probe()
			pod := h.sync("p")
			if cs := mainStatus(t, pod); cs.Ready != tc.wantReady {
				t.Errorf("ready = %v, want %v (events %q)", cs.Ready, tc.wantReady, h.events.list())
			}
			if tc.wantEvent != "" && h.events.count("Unhealthy", tc.wantEvent) != 1 {
				t.Errorf("events %q, want one Unhealthy %q", h.events.list(), tc.wantEvent)
			}
			if tc.wantEvent == "" && len(h.events.problems()) != 0 {
				t.Errorf("events %q, want none but the container's start", h.events.list())
			}
		})
	}
}

func TestProbeEventNamesTheContainer(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) { c.ReadinessProbe = execProbe("check", 1, 0) }))
	h.rt.reply("main", "check", failing)
	h.sync("p")
	h.probe()
	h.events.mu.Lock()
	defer h.events.mu.Unlock()
	var unhealthy []recordedEvent
	for _, ev := range h.events.events {
		if ev.reason == "Unhealthy" {
			unhealthy = append(unhealthy, ev)
		}
	}
	if len(unhealthy) != 1 {
		t.Fatalf("events %+v, want one Unhealthy", h.events.events)
	}
	ref, ok := unhealthy[0].object.(*corev1.ObjectReference)
	if !ok || ref.Kind != "Pod" || ref.Name != "p" || ref.Namespace != "default" || ref.UID != "uid-p" || ref.FieldPath != "spec.containers{main}" {
		t.Fatalf("event about %#v, want the pod's container main", unhealthy[0].object)
	}
}

// TestProbeWorkersRunOnTheirOwn lets the workers' goroutines probe, on the
// fake clock's timers, and sync the pod when a result changes.
func TestProbeWorkersRunOnTheirOwn(t *testing.T) {
	h := newPodHarness(t, probed(func(c *corev1.Container) {
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: execProbe("check", 0, 0).ProbeHandler, PeriodSeconds: 10, FailureThreshold: 1}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.m.prober.drive = func(_ context.Context, w *probeWorker) { go w.run(ctx) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 30s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	synced := func() bool { return h.m.queue.Len() > 0 }
	drain := func() {
		for h.m.queue.Len() > 0 {
			key, _ := h.m.queue.Get()
			h.m.queue.Done(key)
		}
	}

	h.sync("p")
	waitFor("the first probe, at once", func() bool { return h.rt.ran("main", "check") == 1 })
	waitFor("a sync for the result", synced)
	drain()
	if cs := mainStatus(t, h.sync("p")); !cs.Ready {
		t.Fatal("not ready after a passing probe")
	}

	h.rt.reply("main", "check", failing)
	waitFor("the worker waiting for its period", func() bool { return h.clock.HasWaiters() })
	h.clock.Step(10 * time.Second)
	waitFor("the second probe, a period later", func() bool { return h.rt.ran("main", "check") == 2 })
	waitFor("a sync for the failure", synced)
	if cs := mainStatus(t, h.sync("p")); cs.Ready {
		t.Fatal("still ready after a failing probe")
	}

	// The pod's deletion stops the worker.
	p, _ := h.client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](0)
	if _, err := h.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("p")
	h.m.prober.mu.Lock()
	workers := len(h.m.prober.workers)
	h.m.prober.mu.Unlock()
	if workers != 0 {
		t.Fatalf("%d probe workers left after the pod's deletion", workers)
	}
}

func serverPort(t *testing.T, raw string) int32 {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return int32(port)
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return int32(port)
}

// serveGRPCHealth serves the gRPC health protocol on loopback: the server
// is SERVING, its service "down" NOT_SERVING.
func serveGRPCHealth(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return int32(l.Addr().(*net.TCPAddr).Port)
}
