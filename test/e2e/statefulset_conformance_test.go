package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scenarios of upstream's StatefulSet conformance tests
// (test/e2e/apps/statefulset.go in kubernetes), replayed with stock kubectl
// on the shared cluster, each in its own namespace, plus stead's own
// StatefulSet features (docs/statefulset.md). Pods are busybox, made Ready
// and unready by hand: their readiness probe is `test -f /tmp/ready`, which
// the tests create and remove with kubectl exec, as upstream's tests break
// and restore their HTTP probe.

// confSet describes the StatefulSet web of a conformance scenario.
type confSet struct {
	replicas    int
	policy      string // podManagementPolicy; "" leaves the default, OrderedReady
	probe       bool   // a readiness probe on /tmp/ready
	readyAtBoot bool   // the container creates /tmp/ready itself when it starts
	claims      bool   // a volumeClaimTemplate www mounted at /data
	annotations string // extra metadata.annotations of the set, as YAML flow pairs
}

func (s confSet) manifest() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\n")
	if s.annotations != "" {
		fmt.Fprintf(&b, "  annotations: {%s}\n", s.annotations)
	}
	fmt.Fprintf(&b, "spec:\n  serviceName: web\n  replicas: %d\n", s.replicas)
	if s.policy != "" {
		fmt.Fprintf(&b, "  podManagementPolicy: %s\n", s.policy)
	}
	b.WriteString(`  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.28.4
        imagePullPolicy: Never
`)
	if s.readyAtBoot {
		b.WriteString("        command: [sh, -c, \"touch /tmp/ready; exec sleep 3600\"]\n")
	} else {
		b.WriteString("        command: [sleep, \"3600\"]\n")
	}
	if s.probe {
		b.WriteString(`        readinessProbe:
          exec: {command: [test, -f, /tmp/ready]}
          periodSeconds: 1
          failureThreshold: 1
`)
	}
	if s.claims {
		b.WriteString(`        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`)
	}
	return b.String()
}

// confNS is one scenario's namespace on the shared cluster.
type confNS struct {
	t  *testing.T
	c  *cluster
	ns string
}

func newConfNS(t *testing.T, ns string) *confNS {
	c := sharedCluster(t)
	c.mustKubectl("", "create", "namespace", ns)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.kubectl("", "-n", ns, "get", "sts,pods,controllerrevisions", "-o", "wide", "--show-labels")
			t.Logf("at the failure:\n%s", out)
			out, _ = c.kubectl("", "-n", ns, "get", "sts", "web", "-o", "jsonpath={.status}")
			t.Logf("status: %s", out)
			out, _ = c.kubectl("", "-n", ns, "get", "events", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", out)
			if log, err := os.ReadFile(filepath.Join(c.dataDir, "logs", "stead.log")); err == nil {
				var lines []string
				for _, line := range strings.Split(string(log), "\n") {
					if strings.Contains(line, ns+"/") || strings.Contains(line, `"`+ns+`"`) {
						lines = append(lines, line)
					}
				}
				if len(lines) > 200 {
					lines = lines[len(lines)-200:]
				}
				t.Logf("stead.log about %s:\n%s", ns, strings.Join(lines, "\n"))
			}
		}
		// Free the node for the next tests; the namespace goes on its own.
		_, _ = c.kubectl("", "delete", "namespace", ns, "--wait=false")
	})
	return &confNS{t: t, c: c, ns: ns}
}

func (s *confNS) k(args ...string) string {
	s.t.Helper()
	return s.c.mustKubectl("", append([]string{"-n", s.ns}, args...)...)
}

func (s *confNS) apply(manifest string) {
	s.t.Helper()
	s.c.mustKubectl(manifest, "-n", s.ns, "apply", "-f", "-")
}

// stsField is one jsonpath of the StatefulSet web.
func (s *confNS) stsField(path string) string {
	s.t.Helper()
	return s.k("get", "sts", "web", "-o", "jsonpath="+path)
}

// confPod is what the tests look at in a pod of web.
type confPod struct {
	name, phase, ready, uid, rev string
	deleting                     bool
}

func (p confPod) String() string {
	s := fmt.Sprintf("%s:%s/ready=%s", p.name, p.phase, p.ready)
	if p.deleting {
		s += "/terminating"
	}
	return s
}

// pods lists web's pods, in name order.
func (s *confNS) pods() []confPod {
	s.t.Helper()
	out := s.k("get", "pods", "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.metadata.name}|{.status.phase}|{.status.conditions[?(@.type=="Ready")].status}|{.metadata.uid}|{.metadata.labels.controller-revision-hash}|{.metadata.deletionTimestamp}{"\n"}{end}`)
	var pods []confPod
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 6 {
			continue
		}
		pods = append(pods, confPod{name: f[0], phase: f[1], ready: f[2], uid: f[3], rev: f[4], deleting: f[5] != ""})
	}
	return pods
}

func podsString(pods []confPod) string {
	var parts []string
	for _, p := range pods {
		parts = append(parts, p.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func podNames(pods []confPod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.name)
	}
	return strings.Join(names, " ")
}

func podByName(pods []confPod, name string) (confPod, bool) {
	for _, p := range pods {
		if p.name == name {
			return p, true
		}
	}
	return confPod{}, false
}

// waitPods waits until check accepts web's pods.
func (s *confNS) waitPods(timeout time.Duration, what string, check func([]confPod) error) []confPod {
	s.t.Helper()
	var pods []confPod
	eventually(s.t, timeout, what, func() error {
		pods = s.pods()
		if err := check(pods); err != nil {
			return fmt.Errorf("%v; pods %s", err, podsString(pods))
		}
		return nil
	})
	return pods
}

// holdPods checks that check accepts web's pods all through d, the way
// upstream's confirmStatefulPodCount does.
func (s *confNS) holdPods(d time.Duration, what string, check func([]confPod) error) {
	s.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		pods := s.pods()
		if err := check(pods); err != nil {
			s.t.Fatalf("%s: %v; pods %s", what, err, podsString(pods))
		}
	}
}

// exactly accepts pods of these names (in order), every one Running with
// the given Ready condition ("True", "False"; "" for any), none terminating.
func exactly(ready string, names ...string) func([]confPod) error {
	return func(pods []confPod) error {
		if got := podNames(pods); got != strings.Join(names, " ") {
			return fmt.Errorf("pods %q, want %q", got, strings.Join(names, " "))
		}
		for _, p := range pods {
			if p.phase != "Running" || p.deleting || (ready != "" && p.ready != ready) {
				return fmt.Errorf("%s, want Running ready=%s", p, ready)
			}
		}
		return nil
	}
}

// podNamesOnly accepts pods of these names, in any state.
func podNamesOnly(names ...string) func([]confPod) error {
	return func(pods []confPod) error {
		if got := podNames(pods); got != strings.Join(names, " ") {
			return fmt.Errorf("pods %q, want %q", got, strings.Join(names, " "))
		}
		return nil
	}
}

func (s *confNS) makeReady(pods ...string) {
	s.t.Helper()
	for _, pod := range pods {
		s.k("exec", pod, "--", "touch", "/tmp/ready")
	}
}

func (s *confNS) makeUnready(pods ...string) {
	s.t.Helper()
	for _, pod := range pods {
		s.k("exec", pod, "--", "rm", "-f", "/tmp/ready")
	}
}

// waitReadyReplicas waits for the set's status to count n Ready pods
// (status.readyReplicas is omitted when 0).
func (s *confNS) waitReadyReplicas(timeout time.Duration, n int) {
	s.t.Helper()
	eventually(s.t, timeout, fmt.Sprintf("status.readyReplicas %d", n), func() error {
		got := s.stsField("{.status.readyReplicas}")
		if got == "" {
			got = "0"
		}
		if got != fmt.Sprint(n) {
			return fmt.Errorf("readyReplicas %q", got)
		}
		return nil
	})
}

// podEvent is one event of a `kubectl get pods -w --output-watch-events`.
type podEvent struct {
	typ, name, uid, ready string
	deleting              bool
}

func (e podEvent) String() string {
	s := fmt.Sprintf("%s %s(%.8s) ready=%s", e.typ, e.name, e.uid, e.ready)
	if e.deleting {
		s += " terminating"
	}
	return s
}

// podWatch records what a kubectl watch of pods prints, in order.
type podWatch struct {
	mu     sync.Mutex
	events []podEvent
}

// watchPods starts `kubectl get pods -w --output-watch-events` with the
// given selector arguments; it ends with the test.
func (s *confNS) watchPods(selector ...string) *podWatch {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.t.Cleanup(cancel)
	args := append([]string{"-n", s.ns, "get", "pods", "-w", "--output-watch-events"}, selector...)
	args = append(args, "-o",
		`jsonpath={.type}|{.object.metadata.name}|{.object.metadata.uid}|{.object.status.conditions[?(@.type=="Ready")].status}|{.object.metadata.deletionTimestamp}{"\n"}`)
	lines, err := s.c.watchLines(ctx, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	w := &podWatch{}
	go func() {
		for line := range lines {
			f := strings.Split(line, "|")
			if len(f) != 5 {
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, podEvent{typ: f[0], name: f[1], uid: f[2], ready: f[3], deleting: f[4] != ""})
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *podWatch) snapshot() []podEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]podEvent(nil), w.events...)
}

func eventsString(events []podEvent) string {
	var parts []string
	for _, e := range events {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, "\n  ")
}

// first returns the index of the first event that match accepts, or -1.
func first(events []podEvent, match func(podEvent) bool) int {
	for i, e := range events {
		if match(e) {
			return i
		}
	}
	return -1
}

// 1. Upstream's "Scaling should happen in predictable order and halt if any
// stateful pod is unhealthy", OrderedReady.
func TestStatefulSetConformanceOrderedScalingHaltsOnUnreadyPod(t *testing.T) {
	s := newConfNS(t, "conf-ordered")
	w := s.watchPods("-l", "app=web")
	s.apply(confSet{replicas: 1, probe: true}.manifest())

	s.waitPods(90*time.Second, "web-0 Running, not Ready", exactly("False", "web-0"))

	// Scale up halts while web-0 is unready: web-1 is not even created.
	s.k("scale", "sts", "web", "--replicas=3")
	s.holdPods(8*time.Second, "scale up to 3 with web-0 unready", podNamesOnly("web-0"))

	// Made Ready one at a time, the pods come one at a time, in order.
	s.makeReady("web-0")
	s.waitPods(90*time.Second, "web-1 created once web-0 is Ready", func(pods []confPod) error {
		if p, ok := podByName(pods, "web-1"); !ok || p.phase != "Running" {
			return fmt.Errorf("web-1 not Running yet")
		}
		return nil
	})
	s.holdPods(5*time.Second, "web-1 unready", podNamesOnly("web-0", "web-1"))
	s.makeReady("web-1")
	s.waitPods(90*time.Second, "web-2 created once web-1 is Ready", func(pods []confPod) error {
		if p, ok := podByName(pods, "web-2"); !ok || p.phase != "Running" {
			return fmt.Errorf("web-2 not Running yet")
		}
		return nil
	})
	s.makeReady("web-2")
	s.waitPods(90*time.Second, "three pods Ready", exactly("True", "web-0", "web-1", "web-2"))
	s.waitReadyReplicas(60*time.Second, 3)

	// What the watch saw: each pod created after its predecessor was Ready.
	events := w.snapshot()
	t.Logf("scale up, as watched:\n  %s", eventsString(events))
	for i := 1; i < 3; i++ {
		prev, pod := fmt.Sprintf("web-%d", i-1), fmt.Sprintf("web-%d", i)
		added := first(events, func(e podEvent) bool { return e.name == pod && e.typ == "ADDED" })
		prevReady := first(events, func(e podEvent) bool { return e.name == prev && e.ready == "True" })
		if added < 0 || prevReady < 0 || added < prevReady {
			t.Errorf("%s created (event %d) before %s was Ready (event %d); events:\n  %s", pod, added, prev, prevReady, eventsString(events))
		}
	}

	// Scale down halts while pods are unready.
	s.makeUnready("web-0", "web-1", "web-2")
	s.waitPods(60*time.Second, "all three unready", exactly("False", "web-0", "web-1", "web-2"))
	s.waitReadyReplicas(60*time.Second, 0)
	mark := len(w.snapshot())
	s.k("scale", "sts", "web", "--replicas=0")
	s.holdPods(8*time.Second, "scale down to 0 with every pod unready", exactly("False", "web-0", "web-1", "web-2"))

	// Healthy again, they go from the highest ordinal down, one at a time.
	s.makeReady("web-0", "web-1", "web-2")
	s.waitPods(90*time.Second, "all pods gone", podNamesOnly())
	events = w.snapshot()[mark:]
	t.Logf("scale down, as watched:\n  %s", eventsString(events))
	for i := 2; i > 0; i-- {
		pod, next := fmt.Sprintf("web-%d", i), fmt.Sprintf("web-%d", i-1)
		deleted := first(events, func(e podEvent) bool { return e.name == pod && e.typ == "DELETED" })
		nextTerminating := first(events, func(e podEvent) bool { return e.name == next && (e.deleting || e.typ == "DELETED") })
		if deleted < 0 || nextTerminating < 0 || nextTerminating < deleted {
			t.Errorf("%s terminating (event %d) before %s was gone (event %d); events:\n  %s", next, nextTerminating, pod, deleted, eventsString(events))
		}
	}
	if got := s.stsField("{.status.replicas}"); got != "0" {
		t.Errorf("status.replicas %q after scale down, want 0", got)
	}
}

// 2. Upstream's "Burst scaling should run to completion even with unhealthy
// pods", Parallel.
func TestStatefulSetConformanceBurstScaling(t *testing.T) {
	s := newConfNS(t, "conf-burst")
	s.apply(confSet{replicas: 0, policy: "Parallel", probe: true}.manifest())
	eventually(t, 30*time.Second, "the set observed", func() error {
		if got := s.stsField("{.status.observedGeneration}"); got != "1" {
			return fmt.Errorf("observedGeneration %q", got)
		}
		return nil
	})

	// 0 → 3: all three, although none is ever Ready.
	s.k("scale", "sts", "web", "--replicas=3")
	s.waitPods(90*time.Second, "three pods Running, none Ready", exactly("False", "web-0", "web-1", "web-2"))
	s.makeReady("web-0", "web-1", "web-2")
	s.waitReadyReplicas(60*time.Second, 3)

	// 3 → 0 with every pod unready: all go.
	s.makeUnready("web-0", "web-1", "web-2")
	s.waitPods(60*time.Second, "all three unready", exactly("False", "web-0", "web-1", "web-2"))
	s.waitReadyReplicas(60*time.Second, 0)
	s.k("scale", "sts", "web", "--replicas=0")
	s.waitPods(90*time.Second, "all pods gone", podNamesOnly())
	eventually(t, 30*time.Second, "status.replicas 0", func() error {
		if got := s.stsField("{.status.replicas}"); got != "0" {
			return fmt.Errorf("status.replicas %q", got)
		}
		return nil
	})
}

// 3. kubectl scale 2 → 5 → 1, and upstream's "should have a working scale
// subresource": the /scale subresource read, replaced and patched.
func TestStatefulSetConformanceScaleSubresource(t *testing.T) {
	s := newConfNS(t, "conf-scale")
	s.apply(confSet{replicas: 2}.manifest())
	scaleURL := "/apis/apps/v1/namespaces/" + s.ns + "/statefulsets/web/scale"
	// parseScale reads an autoscaling/v1 Scale: spec and status replicas.
	parseScale := func(what, out string) string {
		t.Helper()
		var scale struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
			Spec       struct {
				Replicas int `json:"replicas"`
			} `json:"spec"`
			Status struct {
				Replicas int    `json:"replicas"`
				Selector string `json:"selector"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &scale); err != nil || scale.Kind != "Scale" || scale.APIVersion != "autoscaling/v1" || scale.Status.Selector != "app=web" {
			t.Fatalf("%s %s: %v\n%s", what, scaleURL, err, out)
		}
		return fmt.Sprintf("%d/%d", scale.Spec.Replicas, scale.Status.Replicas)
	}
	readScale := func() string {
		t.Helper()
		return parseScale("GET", s.c.mustKubectl("", "get", "--raw", scaleURL))
	}
	scaledTo := func(n int, names ...string) {
		t.Helper()
		s.waitPods(120*time.Second, fmt.Sprintf("%d pods Running and Ready", n), exactly("True", names...))
		eventually(t, 60*time.Second, fmt.Sprintf("status.replicas and scale at %d", n), func() error {
			var fields []string // omitted counts are 0
			for _, f := range strings.Split(s.stsField("{.spec.replicas}|{.status.replicas}|{.status.readyReplicas}|{.status.availableReplicas}"), "|") {
				if f == "" {
					f = "0"
				}
				fields = append(fields, f)
			}
			st := strings.Join(fields, " ")
			if want := fmt.Sprintf("%d %d %d %d", n, n, n, n); st != want {
				return fmt.Errorf("spec/status/ready/available %q, want %q", st, want)
			}
			if got := readScale(); got != fmt.Sprintf("%d/%d", n, n) {
				return fmt.Errorf("scale spec/status %s", got)
			}
			return nil
		})
	}
	scaledTo(2, "web-0", "web-1")

	s.k("scale", "sts", "web", "--replicas=5")
	scaledTo(5, "web-0", "web-1", "web-2", "web-3", "web-4")
	s.k("scale", "sts", "web", "--replicas=1")
	scaledTo(1, "web-0")

	// PUT /scale, unconditionally (no resourceVersion), as upstream does.
	out := s.c.mustKubectl(fmt.Sprintf(`{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"web","namespace":%q},"spec":{"replicas":2}}`, s.ns),
		"replace", "--raw", scaleURL, "-f", "-")
	if got := parseScale("PUT", out); got != "2/1" {
		t.Errorf("PUT %s answered spec/status %s, want 2/1:\n%s", scaleURL, got, out)
	}
	if got := s.stsField("{.spec.replicas}"); got != "2" {
		t.Errorf("spec.replicas after PUT /scale: %q, want 2", got)
	}
	scaledTo(2, "web-0", "web-1")

	// PATCH /scale (strategic merge, as upstream's test).
	s.k("patch", "sts", "web", "--subresource=scale", "-p", `{"spec":{"replicas":4}}`)
	if got := s.stsField("{.spec.replicas}"); got != "4" {
		t.Errorf("spec.replicas after PATCH /scale: %q, want 4", got)
	}
	scaledTo(4, "web-0", "web-1", "web-2", "web-3")
	s.k("patch", "sts", "web", "--subresource=scale", "--type=merge", "-p", `{"spec":{"replicas":0}}`)
	s.waitPods(90*time.Second, "all pods gone", podNamesOnly())
	scaledTo(0)
}

// 4. Upstream's "Should recreate evicted statefulset", by deletion and by
// the eviction API: the pod comes back with its name and its claim, and the
// replacement is created only once the old pod is gone.
func TestStatefulSetConformanceRecreateDeletedAndEvicted(t *testing.T) {
	s := newConfNS(t, "conf-recreate")
	s.apply(confSet{replicas: 2, claims: true}.manifest())
	s.waitPods(120*time.Second, "two pods Running", exactly("True", "web-0", "web-1"))

	recreate := func(pod, how string, remove func()) {
		t.Helper()
		claim := "www-" + pod
		s.k("exec", pod, "--", "sh", "-c", "echo kept-"+how+" > /data/mark")
		claimUID := s.k("get", "pvc", claim, "-o", "jsonpath={.metadata.uid}")
		before, _ := podByName(s.pods(), pod)
		w := s.watchPods("--field-selector", "metadata.name="+pod)
		eventually(t, 30*time.Second, "the watch lists "+pod, func() error {
			if first(w.snapshot(), func(e podEvent) bool { return e.uid == before.uid }) < 0 {
				return fmt.Errorf("not yet")
			}
			return nil
		})

		remove()

		after := s.waitPods(120*time.Second, pod+" recreated and Ready", func(pods []confPod) error {
			p, ok := podByName(pods, pod)
			if !ok || p.uid == before.uid || p.phase != "Running" || p.ready != "True" {
				return fmt.Errorf("%s not replaced and Ready yet", pod)
			}
			return nil
		})
		now, _ := podByName(after, pod)
		// Never two of that name: the new one's first event follows the old
		// one's deletion.
		var events []podEvent
		eventually(t, 30*time.Second, "the watch sees the new "+pod, func() error {
			events = w.snapshot()
			if first(events, func(e podEvent) bool { return e.uid == now.uid }) < 0 {
				return fmt.Errorf("events:\n  %s", eventsString(events))
			}
			return nil
		})
		t.Logf("%s %s, as watched:\n  %s", how, pod, eventsString(events))
		deleted := first(events, func(e podEvent) bool { return e.uid == before.uid && e.typ == "DELETED" })
		created := first(events, func(e podEvent) bool { return e.uid == now.uid })
		if deleted < 0 || created < deleted || events[created].typ != "ADDED" {
			t.Errorf("%s (%s): new pod's first event %d, old pod's deletion %d; events:\n  %s", pod, how, created, deleted, eventsString(events))
		}
		if got := s.k("get", "pvc", claim, "-o", "jsonpath={.metadata.uid} {.status.phase}"); got != claimUID+" Bound" {
			t.Errorf("claim %s after %s: %q, want the same claim %s Bound", claim, how, got, claimUID)
		}
		if got := s.k("get", "pod", pod, "-o", `jsonpath={.spec.volumes[?(@.name=="www")].persistentVolumeClaim.claimName}`); got != claim {
			t.Errorf("new %s mounts claim %q, want %s", pod, got, claim)
		}
		if got := strings.TrimSpace(s.k("exec", pod, "--", "cat", "/data/mark")); got != "kept-"+how {
			t.Errorf("data in the new %s: %q, want kept-%s", pod, got, how)
		}
	}

	recreate("web-1", "delete", func() { s.k("delete", "pod", "web-1", "--wait=false") })
	recreate("web-0", "evict", func() {
		out := s.c.mustKubectl(fmt.Sprintf(`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-0","namespace":%q}}`, s.ns),
			"create", "--raw", "/api/v1/namespaces/"+s.ns+"/pods/web-0/eviction", "-f", "-")
		if !strings.Contains(out, `"status":"Success"`) {
			t.Fatalf("eviction of web-0: %s", out)
		}
	})
	s.waitPods(60*time.Second, "both pods Running and Ready", exactly("True", "web-0", "web-1"))
}

// 5. stead: a rolling update stuck on a never-Ready pod heals when the
// template is reverted (rollout undo) or fixed, with no pod deleted by hand.
func TestStatefulSetConformanceStuckRolloutHeals(t *testing.T) {
	s := newConfNS(t, "conf-heal")
	s.apply(confSet{replicas: 3, probe: true, readyAtBoot: true}.manifest())
	s.waitPods(120*time.Second, "three pods Ready", exactly("True", "web-0", "web-1", "web-2"))
	rev1 := s.stsField("{.status.currentRevision}")
	if rev1 == "" {
		t.Fatal("no status.currentRevision")
	}

	// stuck breaks the template with change and waits for web-2 to be stuck
	// at the broken revision while web-0 and web-1 stay as they were.
	stuck := func(what string, change ...string) (broken string) {
		t.Helper()
		before := s.pods()
		good := before[0].rev
		s.k(change...)
		s.waitPods(90*time.Second, "web-2 replaced by a "+what+" pod", func(pods []confPod) error {
			broken = s.stsField("{.status.updateRevision}")
			p, ok := podByName(pods, "web-2")
			if broken == good || !ok || p.rev != broken || p.deleting {
				return fmt.Errorf("updateRevision %s, web-2 not at it yet", broken)
			}
			return nil
		})
		s.holdPods(8*time.Second, "rollout stuck at web-2", func(pods []confPod) error {
			if len(pods) != 3 {
				return fmt.Errorf("%d pods", len(pods))
			}
			for i, p := range pods[:2] {
				if p.uid != before[i].uid || p.rev != good || p.ready != "True" {
					return fmt.Errorf("%s touched by the stuck rollout", p)
				}
			}
			if pods[2].ready == "True" {
				return fmt.Errorf("%s Ready, a %s pod", pods[2], what)
			}
			return nil
		})
		eventually(t, 30*time.Second, "status of the stuck rollout", func() error {
			if got := s.stsField("{.status.readyReplicas} {.status.updatedReplicas}"); got != "2 1" {
				return fmt.Errorf("ready/updated replicas %q, want \"2 1\"", got)
			}
			return nil
		})
		return broken
	}
	healed := func(rev string) {
		t.Helper()
		s.waitPods(120*time.Second, "every pod Ready at "+rev, func(pods []confPod) error {
			if err := exactly("True", "web-0", "web-1", "web-2")(pods); err != nil {
				return err
			}
			for _, p := range pods {
				if p.rev != rev {
					return fmt.Errorf("%s at %s", p.name, p.rev)
				}
			}
			return nil
		})
		eventually(t, 60*time.Second, "status at "+rev, func() error {
			want := fmt.Sprintf("%s %s 3 3 3", rev, rev)
			if got := s.stsField("{.status.currentRevision} {.status.updateRevision} {.status.replicas} {.status.readyReplicas} {.status.updatedReplicas}"); got != want {
				return fmt.Errorf("current/update revision, replicas/ready/updated %q, want %q", got, want)
			}
			return nil
		})
		if out, err := s.c.kubectl("", "-n", s.ns, "rollout", "status", "sts/web", "--timeout=60s"); err != nil {
			t.Errorf("rollout status: %v\n%s", err, out)
		}
	}
	recreatedEvent := func(pod, rev string) {
		t.Helper()
		eventually(t, 30*time.Second, "a RecreatingBrokenPod event for "+pod, func() error {
			out := s.k("get", "events", "--field-selector", "involvedObject.kind=StatefulSet,involvedObject.name=web,reason=RecreatingBrokenPod",
				"-o", `jsonpath={range .items[*]}{.type} {.message}{"\n"}{end}`)
			if !strings.Contains(out, "Normal Deleting pod "+pod+" to recreate it at revision "+rev) {
				return fmt.Errorf("events %q", out)
			}
			return nil
		})
	}

	// A pod that can never start (imagePullPolicy Never, no such image),
	// then rollout undo: web-2 comes back at the first revision by itself.
	broken := stuck("ErrImageNeverPull", "set", "image", "sts/web", "main=busybox:does-not-exist")
	eventually(t, 60*time.Second, "web-2 waiting in ErrImageNeverPull", func() error {
		if got := s.k("get", "pod", "web-2", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"); got != "ErrImageNeverPull" {
			return fmt.Errorf("web-2 waiting reason %q", got)
		}
		return nil
	})
	s.k("rollout", "undo", "sts/web")
	healed(rev1)
	recreatedEvent("web-2", rev1)
	if broken == rev1 {
		t.Fatal("the broken revision is the first")
	}

	// A crash loop, then a fix forward to a third template: web-2 is
	// recreated at it and the rollout goes on down to web-0.
	stuck("crash-looping", "patch", "sts", "web", "-p",
		`{"spec":{"template":{"spec":{"containers":[{"name":"main","command":["sh","-c","exit 1"]}]}}}}`)
	s.k("patch", "sts", "web", "-p",
		`{"spec":{"template":{"spec":{"containers":[{"name":"main","command":["sh","-c","touch /tmp/ready; exec sleep 3600"],"env":[{"name":"FIXED","value":"yes"}]}]}}}}`)
	var rev3 string
	eventually(t, 30*time.Second, "a third update revision", func() error {
		rev3 = s.stsField("{.status.updateRevision}")
		if rev3 == rev1 || rev3 == broken || rev3 == "" {
			return fmt.Errorf("updateRevision %q", rev3)
		}
		return nil
	})
	healed(rev3)
	recreatedEvent("web-2", rev3)
	if got := strings.TrimSpace(s.k("exec", "web-0", "--", "sh", "-c", "echo $FIXED")); got != "yes" {
		t.Errorf("web-0 after the fixed rollout: FIXED=%q", got)
	}
}

// 6. stead: the annotation stead.io/pod-management-policy switches a live
// OrderedReady set to Parallel and back, without a new revision.
func TestStatefulSetConformancePolicyAnnotation(t *testing.T) {
	s := newConfNS(t, "conf-policy")
	s.apply(confSet{replicas: 1, probe: true}.manifest())
	pods := s.waitPods(90*time.Second, "web-0 Running, not Ready", exactly("False", "web-0"))
	web0 := pods[0].uid
	rev := s.stsField("{.status.updateRevision}")

	s.k("scale", "sts", "web", "--replicas=3")
	s.holdPods(6*time.Second, "OrderedReady: scale up halted by unready web-0", podNamesOnly("web-0"))

	s.k("annotate", "sts", "web", "stead.io/pod-management-policy=Parallel")
	s.waitPods(90*time.Second, "Parallel: web-1 and web-2 created with web-0 still unready", exactly("False", "web-0", "web-1", "web-2"))
	if p, _ := podByName(s.pods(), "web-0"); p.uid != web0 {
		t.Errorf("web-0 replaced by the annotation: uid %s, was %s", p.uid, web0)
	}
	if got := s.stsField("{.spec.podManagementPolicy} {.status.updateRevision}"); got != "OrderedReady "+rev {
		t.Errorf("spec policy and revision after the annotation: %q, want OrderedReady %s", got, rev)
	}
	if n := strings.Count(s.k("get", "controllerrevisions", "-o", "name"), "controllerrevision"); n != 1 {
		t.Errorf("%d ControllerRevisions after the annotation, want 1", n)
	}

	// Parallel scale down does not wait for anyone to be Ready either.
	s.k("scale", "sts", "web", "--replicas=1")
	s.waitPods(90*time.Second, "Parallel: scaled down to web-0 while all unready", exactly("False", "web-0"))

	// Without the annotation, the spec's OrderedReady applies again.
	s.k("annotate", "sts", "web", "stead.io/pod-management-policy-")
	s.k("scale", "sts", "web", "--replicas=2")
	s.holdPods(6*time.Second, "OrderedReady again: web-1 waits for web-0", podNamesOnly("web-0"))
	s.makeReady("web-0")
	s.waitPods(90*time.Second, "web-1 once web-0 is Ready", func(pods []confPod) error {
		if len(pods) != 2 || pods[1].name != "web-1" {
			return fmt.Errorf("no web-1")
		}
		return nil
	})
}

// 7. kubectl rollout history and undo --to-revision on a set, and the
// set's events in kubectl describe, in upstream's wording.
func TestStatefulSetConformanceHistoryUndoAndEvents(t *testing.T) {
	s := newConfNS(t, "conf-history")
	s.apply(confSet{replicas: 2}.manifest())
	rolledOut := func() {
		t.Helper()
		if out, err := s.c.kubectl("", "-n", s.ns, "rollout", "status", "sts/web", "--timeout=120s"); err != nil {
			t.Fatalf("rollout status: %v\n%s", err, out)
		}
		s.waitPods(60*time.Second, "two pods Ready", exactly("True", "web-0", "web-1"))
	}
	rolledOut()
	s.k("set", "env", "sts/web", "MODE=two")
	rolledOut()
	s.k("set", "env", "sts/web", "MODE=three")
	rolledOut()

	revisions := func() map[string]string { // revision number → ControllerRevision name
		out := s.k("get", "controllerrevisions", "-o", `jsonpath={range .items[*]}{.revision}={.metadata.name}{"\n"}{end}`)
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if n, name, ok := strings.Cut(line, "="); ok {
				m[n] = name
			}
		}
		return m
	}
	historyRe := regexp.MustCompile(`(?m)^(\d+)\s`)
	history := func() string {
		var nums []string
		for _, m := range historyRe.FindAllStringSubmatch(s.k("rollout", "history", "sts/web"), -1) {
			nums = append(nums, m[1])
		}
		return strings.Join(nums, " ")
	}
	if got := history(); got != "1 2 3" {
		t.Fatalf("rollout history revisions %q, want 1 2 3", got)
	}
	revs := revisions()
	if got := s.stsField("{.status.currentRevision}"); got != revs["3"] {
		t.Errorf("currentRevision %s, want revision 3 %s", got, revs["3"])
	}
	if out := s.k("rollout", "history", "sts/web", "--revision=2"); !regexp.MustCompile(`MODE:\s+two`).MatchString(out) {
		t.Errorf("rollout history --revision=2 shows no MODE=two:\n%s", out)
	}

	s.k("rollout", "undo", "sts/web", "--to-revision=2")
	eventually(t, 30*time.Second, "revision 2 is the update revision", func() error {
		if got := s.stsField("{.status.updateRevision}"); got != revs["2"] {
			return fmt.Errorf("updateRevision %s, want %s", got, revs["2"])
		}
		return nil
	})
	rolledOut()
	for _, pod := range []string{"web-0", "web-1"} {
		if got := strings.TrimSpace(s.k("exec", pod, "--", "sh", "-c", "echo $MODE")); got != "two" {
			t.Errorf("%s after undo --to-revision=2: MODE=%q", pod, got)
		}
	}
	// The undone revision is reused and renumbered, not copied.
	if got := history(); got != "1 3 4" {
		t.Errorf("rollout history after undo: %q, want 1 3 4", got)
	}
	if after := revisions(); after["4"] != revs["2"] || len(after) != 3 {
		t.Errorf("ControllerRevisions after undo %v, want revision 2's %s renumbered 4", after, revs["2"])
	}

	// upstream v1.37's wording (stateful_pod_control.go's recordPodEvent).
	out := s.k("describe", "sts", "web")
	for _, want := range []string{
		"SuccessfulCreate  ",
		"Create Pod web-0 in StatefulSet web successful",
		"Create Pod web-1 in StatefulSet web successful",
		"Delete Pod web-1 in StatefulSet web successful",
		"Delete Pod web-0 in StatefulSet web successful",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl describe sts web has no %q:\n%s", want, out)
		}
	}
}

// 8. stead: a set recreated around its pods with bigger volumeClaimTemplates
// (the API server forbids changing them in place) grows its bound claims,
// and the pods see the bigger filesystems (kubernetes#68737).
func TestStatefulSetClaimsGrowWithTheirTemplate(t *testing.T) {
	s := newConfNS(t, "conf-grow")
	manifest := func(size string) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:1.28.4
        imagePullPolicy: Never
        command: [sleep, "3600"]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: %s}}
`, size)
	}
	s.apply(manifest("32Mi"))
	s.waitPods(120*time.Second, "two pods Running", exactly("True", "web-0", "web-1"))
	sizeKiB := func(pod string) (int, error) {
		out, err := s.c.kubectl("", "-n", s.ns, "exec", pod, "--", "sh", "-c", "df -k /data | tail -1 | awk '{print $2}'")
		var n int
		if _, scanErr := fmt.Sscan(out, &n); err != nil || scanErr != nil {
			return 0, fmt.Errorf("df /data in %s: %v %q", pod, err, out)
		}
		return n, nil
	}
	before, err := sizeKiB("web-0")
	if err != nil {
		t.Fatal(err)
	}

	if out, err := s.c.kubectl(manifest("64Mi"), "-n", s.ns, "apply", "-f", "-"); err == nil || !strings.Contains(out, "spec.volumeClaimTemplates") || !strings.Contains(out, "field is immutable") {
		t.Errorf("changing volumeClaimTemplates in place: %v %s, want the API server's refusal", err, out)
	}
	s.k("delete", "statefulset", "web", "--cascade=orphan")
	s.apply(manifest("64Mi"))
	eventually(t, 60*time.Second, "both claims asking for 64Mi", func() error {
		got := s.k("get", "pvc", "www-web-0", "www-web-1", "-o", `jsonpath={range .items[*]}{.spec.resources.requests.storage} {end}`)
		if strings.TrimSpace(got) != "64Mi 64Mi" {
			return fmt.Errorf("claims ask for %q", got)
		}
		return nil
	})
	if out := s.k("get", "events", "--field-selector", "involvedObject.kind=StatefulSet,reason=GrowingClaim", "-o", "jsonpath={.items[*].message}"); !strings.Contains(out, "Claim www-web-0 of Pod web-0 in StatefulSet web grows to 64Mi") {
		t.Errorf("GrowingClaim events: %q", out)
	}
	if !hasCapability(t, capSysResource) {
		// Volumes that grow only unmounted grow as their pods are replaced.
		s.k("rollout", "restart", "statefulset", "web")
	}
	eventually(t, 180*time.Second, "both pods on 64Mi filesystems", func() error {
		if err := exactly("True", "web-0", "web-1")(s.pods()); err != nil {
			return err
		}
		for _, pod := range []string{"web-0", "web-1"} {
			now, err := sizeKiB(pod)
			if err != nil {
				return err
			}
			if now < before+24*1024 {
				return fmt.Errorf("%s: df /data %d KiB, was %d", pod, now, before)
			}
		}
		return nil
	})
}
