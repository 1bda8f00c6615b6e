package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/events"
	"k8s.io/kubernetes/pkg/kubelet/util/format"
	"k8s.io/kubernetes/pkg/probe"
	grpcprobe "k8s.io/kubernetes/pkg/probe/grpc"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
	tcpprobe "k8s.io/kubernetes/pkg/probe/tcp"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// probeType is which of a container's probes a worker runs.
type probeType int

const (
	liveness probeType = iota
	readiness
	startup
)

var probeTypes = []probeType{liveness, readiness, startup}

// of is the container's probe of this type, if it has one.
func (t probeType) of(c *corev1.Container) *corev1.Probe {
	switch t {
	case liveness:
		return c.LivenessProbe
	case readiness:
		return c.ReadinessProbe
	}
	return c.StartupProbe
}

// String is the word the kubelet's events begin with.
func (t probeType) String() string {
	switch t {
	case liveness:
		return "Liveness"
	case readiness:
		return "Readiness"
	}
	return "Startup"
}

type probeResult int

const (
	resultUnknown probeResult = iota
	resultSuccess
	resultFailure
)

const (
	// maxProbeRetries is how often a probe that could not be run at all
	// (not one that failed) is tried again before it counts as an error.
	maxProbeRetries = 3
	// maxExecOutput is what the kubelet keeps of an exec probe's output.
	maxExecOutput = 10 << 10
)

type probeKey struct {
	uid       types.UID
	container string
	kind      probeType
}

// probeOutcome is a probe's settled result for one run of a container: a
// result kept for an earlier run (another id) is no result at all.
type probeOutcome struct {
	id     string
	result probeResult
}

// probeTarget is what the workers know of one container: what the pod
// manager last saw of it, as the kubelet's workers read the status manager.
type probeTarget struct {
	id        string
	running   bool
	startedAt time.Time
}

func (t probeTarget) same(o probeTarget) bool {
	return t.id == o.id && t.running == o.running && t.startedAt.Equal(o.startedAt)
}

type probedPod struct {
	podIP      string
	containers map[string]probeTarget
}

// prober runs the liveness, readiness and startup probes of the node's
// containers, a worker goroutine per probe, and keeps their results, as
// the kubelet's prober manager does. The pod manager reads the results into
// the status it writes (Started, Ready) and kills a container whose
// liveness or startup probe failed; a result that changes queues the pod
// for a sync at once.
type prober struct {
	m *PodManager
	// drive runs a new worker. Tests leave workers undriven and step them
	// by hand, so that a fake clock decides every probe.
	drive func(ctx context.Context, w *probeWorker)
	http  httpprobe.Prober
	tcp   tcpprobe.Prober
	grpc  grpcprobe.Prober

	mu      sync.Mutex
	workers map[probeKey]*probeWorker
	results map[probeKey]probeOutcome
	pods    map[types.UID]probedPod
}

func newProber(m *PodManager) *prober {
	return &prober{
		m:       m,
		drive:   func(ctx context.Context, w *probeWorker) { go w.run(ctx) },
		http:    httpprobe.New(false), // redirects to other hosts are not followed, as the kubelet's
		tcp:     tcpprobe.New(),
		grpc:    grpcprobe.New(),
		workers: map[probeKey]*probeWorker{},
		results: map[probeKey]probeOutcome{},
		pods:    map[types.UID]probedPod{},
	}
}

// addPod makes the workers of the pod's probes, once: a pod's probes never
// change. Only regular containers are probed; the kubelet probes no init
// container but sidecars, which the pod manager does not run.
func (p *prober) addPod(ctx context.Context, pod *corev1.Pod) {
	var started []*probeWorker
	p.mu.Lock()
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, kind := range probeTypes {
			key, spec := probeKey{pod.UID, c.Name, kind}, kind.of(c)
			if spec == nil || p.workers[key] != nil {
				continue
			}
			w := newProbeWorker(p, key, pod, c, spec)
			p.workers[key] = w
			started = append(started, w)
		}
	}
	p.mu.Unlock()
	for _, w := range started {
		p.drive(ctx, w)
	}
}

// removePod stops the pod's workers and forgets their results.
func (p *prober) removePod(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, w := range p.workers {
		if key.uid == uid {
			delete(p.workers, key)
			close(w.stop)
		}
	}
	for key := range p.results {
		if key.uid == uid {
			delete(p.results, key)
		}
	}
	delete(p.pods, uid)
}

// adopt takes over what an earlier stead reported of a container it had
// started and this one adopts, so that a ready pod does not turn unready
// while its probes run again.
func (p *prober) adopt(uid types.UID, cs corev1.ContainerStatus, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cs.Ready {
		p.results[probeKey{uid, cs.Name, readiness}] = probeOutcome{id, resultSuccess}
	}
	if ptr.Deref(cs.Started, false) {
		p.results[probeKey{uid, cs.Name, startup}] = probeOutcome{id, resultSuccess}
	}
}

// updatePodStatus tells the workers what now runs, and sets each
// container's Started and Ready from the probes' results, as the kubelet's
// UpdatePodStatus: a container is started once its startup probe has
// succeeded (at once without one), and ready, once started, when its
// readiness probe succeeds (at once without one).
func (p *prober) updatePodStatus(pod *corev1.Pod, status *corev1.PodStatus) {
	if status.Phase == corev1.PodSucceeded || status.Phase == corev1.PodFailed {
		p.removePod(pod.UID)
		return
	}
	now := probedPod{podIP: status.PodIP, containers: make(map[string]probeTarget, len(status.ContainerStatuses))}
	for _, cs := range status.ContainerStatuses {
		t := probeTarget{id: runtimeID(cs.ContainerID)}
		if r := cs.State.Running; r != nil {
			t.running, t.startedAt = true, r.StartedAt.Time
		}
		now.containers[cs.Name] = t
	}

	p.mu.Lock()
	before, known := p.pods[pod.UID]
	p.pods[pod.UID] = now
	var wake []*probeWorker
	for i := range status.ContainerStatuses {
		cs := &status.ContainerStatuses[i]
		t := now.containers[cs.Name]
		if !known || before.podIP != now.podIP || !before.containers[cs.Name].same(t) {
			wake = append(wake, p.containerWorkersLocked(pod.UID, cs.Name)...)
		}
		started := t.running && p.startedLocked(pod.UID, cs.Name, t.id)
		ready := started
		if ready && p.workers[probeKey{pod.UID, cs.Name, readiness}] != nil {
			ready = p.resultLocked(probeKey{pod.UID, cs.Name, readiness}, t.id) == resultSuccess
		}
		cs.Started, cs.Ready = ptr.To(started), ready
	}
	p.mu.Unlock()
	for _, w := range wake {
		w.wake()
	}
}

// startedLocked is whether the container's run id has passed its startup
// probe; one without a startup probe has started once it runs.
func (p *prober) startedLocked(uid types.UID, container, id string) bool {
	key := probeKey{uid, container, startup}
	if p.workers[key] == nil {
		return true
	}
	return p.resultLocked(key, id) == resultSuccess
}

func (p *prober) resultLocked(key probeKey, id string) probeResult {
	if o, ok := p.results[key]; ok && o.id == id {
		return o.result
	}
	return resultUnknown
}

// failedProbe says which probe, if any, has failed the container's run id
// and wants it killed: liveness, or startup before it ever succeeded.
func (p *prober) failedProbe(uid types.UID, container, id string) (probeType, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, kind := range []probeType{liveness, startup} {
		if p.resultLocked(probeKey{uid, container, kind}, id) == resultFailure {
			return kind, true
		}
	}
	return 0, false
}

// setResult records a worker's settled result; a change wakes the
// container's other workers (a startup probe's success starts them) and
// syncs the pod, which writes its status or kills the container.
func (p *prober) setResult(w *probeWorker, result probeResult) {
	p.mu.Lock()
	if p.workers[w.key] != w {
		p.mu.Unlock()
		return // stopped while it probed
	}
	if o, ok := p.results[w.key]; ok && o == (probeOutcome{w.containerID, result}) {
		p.mu.Unlock()
		return
	}
	p.results[w.key] = probeOutcome{w.containerID, result}
	wake := p.containerWorkersLocked(w.key.uid, w.key.container)
	p.mu.Unlock()
	for _, other := range wake {
		if other != w {
			other.wake()
		}
	}
	p.m.queue.Add(w.podKey)
}

func (p *prober) containerWorkersLocked(uid types.UID, container string) []*probeWorker {
	var workers []*probeWorker
	for _, kind := range probeTypes {
		if w := p.workers[probeKey{uid, container, kind}]; w != nil {
			workers = append(workers, w)
		}
	}
	return workers
}

// setInitial gives a new run of the container the probe's value before it
// first settles, unless an adopted one already has a result. The values
// mean what no result means (unready, alive, not started), so nothing is
// synced for them.
func (p *prober) setInitial(w *probeWorker) {
	initial := map[probeType]probeResult{liveness: resultSuccess, readiness: resultFailure, startup: resultUnknown}[w.key.kind]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers[w.key] != w {
		return
	}
	if o, ok := p.results[w.key]; !ok || o.id != w.containerID {
		p.results[w.key] = probeOutcome{w.containerID, initial}
	}
}

func (p *prober) target(w *probeWorker) (probeTarget, string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[w.key.uid]
	t, ok2 := pod.containers[w.key.container]
	return t, pod.podIP, ok && ok2
}

func (p *prober) isStarted(w *probeWorker, id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startedLocked(w.key.uid, w.key.container, id)
}

// probeWorker runs one probe of one container, as the kubelet's worker:
// it probes a run of the container from its initialDelaySeconds on, every
// periodSeconds, and settles on a result after successThreshold successes
// or failureThreshold failures in a row.
type probeWorker struct {
	p         *prober
	key       probeKey
	podKey    string
	pod       *corev1.Pod
	container *corev1.Container
	spec      corev1.Probe // with the API server's defaults
	trigger   chan struct{}
	stop      chan struct{}

	// Only the goroutine that steps the worker touches these.
	containerID string
	lastResult  probeResult
	resultRun   int
	// onHold: the run failed liveness or settled its startup probe; there
	// is nothing more to probe until the next run.
	onHold    bool
	lastProbe time.Time
}

func newProbeWorker(p *prober, key probeKey, pod *corev1.Pod, c *corev1.Container, spec *corev1.Probe) *probeWorker {
	w := &probeWorker{
		p: p, key: key, podKey: pod.Namespace + "/" + pod.Name, pod: pod, container: c, spec: *spec,
		trigger: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	// The API server defaults these; a pod that did not pass through it
	// (a test's) gets the same here.
	defaults := []struct {
		field *int32
		value int32
	}{{&w.spec.PeriodSeconds, 10}, {&w.spec.TimeoutSeconds, 1}, {&w.spec.SuccessThreshold, 1}, {&w.spec.FailureThreshold, 3}}
	for _, d := range defaults {
		if *d.field <= 0 {
			*d.field = d.value
		}
	}
	return w
}

func (w *probeWorker) wake() {
	select {
	case w.trigger <- struct{}{}:
	default: // already woken
	}
}

// run steps the worker whenever a probe is due or what it probes changed,
// until the prober stops it.
func (w *probeWorker) run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	for {
		wait := w.step(ctx)
		var timer clock.Timer
		var fire <-chan time.Time
		if wait >= 0 {
			timer = w.p.m.clock.NewTimer(wait)
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-w.stop:
		case <-w.trigger:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		default:
		}
	}
}

// step probes if a probe is due, and returns how long until the next one
// is: negative when none is until something changes.
func (w *probeWorker) step(ctx context.Context) time.Duration {
	for {
		now := w.p.m.clock.Now()
		due, ok := w.due(now)
		if !ok {
			return -1
		}
		if due.After(now) {
			return due.Sub(now)
		}
		w.probe(ctx, now)
	}
}

// due is when the next probe of the container's current run is, if any.
func (w *probeWorker) due(now time.Time) (time.Time, bool) {
	t, _, ok := w.p.target(w)
	if !ok || t.id == "" {
		return time.Time{}, false
	}
	if t.id != w.containerID {
		// A new run: it is probed afresh, from its initial delay.
		w.containerID, w.lastResult, w.resultRun, w.onHold, w.lastProbe = t.id, resultUnknown, 0, false, time.Time{}
		w.p.setInitial(w)
	}
	if w.onHold {
		return time.Time{}, false
	}
	if !t.running {
		w.p.setResult(w, resultFailure)
		return time.Time{}, false
	}
	// The startup probe runs until the container has started, the others
	// only from then on.
	if w.p.isStarted(w, t.id) == (w.key.kind == startup) {
		return time.Time{}, false
	}
	due := t.startedAt.Add(time.Duration(w.spec.InitialDelaySeconds) * time.Second)
	if !w.lastProbe.IsZero() {
		if next := w.lastProbe.Add(time.Duration(w.spec.PeriodSeconds) * time.Second); next.After(due) {
			due = next
		}
	}
	return due, true
}

// probe runs the probe once and settles its result when a threshold is
// reached.
func (w *probeWorker) probe(ctx context.Context, now time.Time) {
	w.lastProbe = now
	result, err := w.p.run(ctx, w)
	if err != nil {
		return // a probe that could not run says nothing, as the kubelet's
	}
	if result == w.lastResult {
		w.resultRun++
	} else {
		w.lastResult, w.resultRun = result, 1
	}
	if result == resultFailure && w.resultRun < int(w.spec.FailureThreshold) ||
		result == resultSuccess && w.resultRun < int(w.spec.SuccessThreshold) {
		return
	}
	w.p.setResult(w, result)
	if w.key.kind == liveness && result == resultFailure || w.key.kind == startup {
		// The run will be killed, or has started: probing it again
		// would only race the kill or repeat the answer.
		w.onHold, w.resultRun = true, 0
	}
}

// run probes once, retrying a probe that could not be run, and reports a
// failure as the kubelet's Unhealthy event.
func (p *prober) run(ctx context.Context, w *probeWorker) (probeResult, error) {
	var (
		result probe.Result
		output string
		err    error
	)
	for range maxProbeRetries {
		if result, output, err = p.runOnce(ctx, w); err == nil {
			break
		}
	}
	kind := w.key.kind
	switch {
	case err != nil:
		klog.V(1).InfoS("Probe errored", "probeType", kind, "pod", klog.KObj(w.pod), "containerName", w.container.Name, "err", err)
		p.m.containerEvent(w.pod, w.container, corev1.EventTypeWarning, events.ContainerUnhealthy,
			fmt.Sprintf("%s probe errored and resulted in %s state: %s", kind, result, err))
		return resultFailure, err
	case result == probe.Success:
		return resultSuccess, nil
	case result == probe.Warning:
		p.m.containerEvent(w.pod, w.container, corev1.EventTypeWarning, events.ContainerProbeWarning, fmt.Sprintf("%s probe warning: %s", kind, output))
		return resultSuccess, nil
	case result == probe.Failure:
		klog.V(1).InfoS("Probe failed", "probeType", kind, "pod", klog.KObj(w.pod), "containerName", w.container.Name, "output", output)
		p.m.containerEvent(w.pod, w.container, corev1.EventTypeWarning, events.ContainerUnhealthy, fmt.Sprintf("%s probe failed: %s", kind, output))
	}
	return resultFailure, nil
}

func (p *prober) runOnce(ctx context.Context, w *probeWorker) (probe.Result, string, error) {
	spec := &w.spec
	timeout := time.Duration(spec.TimeoutSeconds) * time.Second
	_, podIP, _ := p.target(w)
	switch {
	case spec.Exec != nil:
		// Only the container's literal env values expand: the kubelet's
		// probes see neither secrets nor the downward API.
		env := map[string]string{}
		for _, e := range w.container.Env {
			if e.Value != "" {
				env[e.Name] = e.Value
			}
		}
		cmd := make([]string, len(spec.Exec.Command))
		for i, arg := range spec.Exec.Command {
			cmd[i] = expand(arg, env)
		}
		code, output, err := p.m.runtime.ExecSync(ctx, w.containerID, cmd, timeout)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return probe.Failure, err.Error(), nil
		case err != nil:
			return probe.Unknown, "", err
		case code != 0:
			return probe.Failure, string(output), nil
		}
		return probe.Success, string(output), nil
	case spec.HTTPGet != nil:
		req, err := httpprobe.NewRequestForHTTPGetAction(spec.HTTPGet, w.container, podIP, "probe")
		if err != nil {
			return probe.Unknown, "", err
		}
		return p.http.Probe(req, timeout)
	case spec.TCPSocket != nil:
		port, err := probe.ResolveContainerPort(spec.TCPSocket.Port, w.container)
		if err != nil {
			return probe.Unknown, "", err
		}
		host := spec.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		return p.tcp.Probe(host, port, timeout)
	case spec.GRPC != nil:
		tls := ptr.Deref(spec.GRPC.Mode, "") == corev1.GRPCProbeModeTLS
		return p.grpc.Probe(podIP, ptr.Deref(spec.GRPC.Service, ""), int(spec.GRPC.Port), timeout, grpcprobe.ProbeOptions{UseTLS: tls})
	}
	return probe.Unknown, "", fmt.Errorf("missing probe handler for %s:%s", format.Pod(w.pod), w.container.Name)
}

// runtimeID is the runtime's id in a status's containerID.
func runtimeID(containerID string) string {
	_, id, _ := strings.Cut(containerID, "://")
	return id
}

// execTimeoutError is ExecSync's error for a command that outran its
// timeout; its message is the kubelet's for a timed-out exec probe.
type execTimeoutError struct {
	cmd     []string
	timeout time.Duration
}

func (e *execTimeoutError) Error() string {
	return fmt.Sprintf("command %q timed out after %s", strings.Join(e.cmd, " "), e.timeout)
}

func (e *execTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// cappedOutput keeps the first limit bytes written to it, from any number
// of goroutines (an exec's stdout and stderr copiers).
type cappedOutput struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

func (o *cappedOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := o.limit - o.buf.Len(); room > 0 {
		o.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil // the rest is dropped, not refused: the command must not see EPIPE
}

func (o *cappedOutput) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.buf.Bytes())
}

// containerRef names a container in events, as the kubelet's do.
func containerRef(pod *corev1.Pod, c *corev1.Container) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, FieldPath: fmt.Sprintf("spec.containers{%s}", c.Name),
	}
	for _, ic := range pod.Spec.InitContainers {
		if ic.Name == c.Name {
			ref.FieldPath = fmt.Sprintf("spec.initContainers{%s}", c.Name)
		}
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		if ec.Name == c.Name {
			ref.FieldPath = fmt.Sprintf("spec.ephemeralContainers{%s}", c.Name)
		}
	}
	return ref
}

func (m *PodManager) containerEvent(pod *corev1.Pod, c *corev1.Container, eventType, reason, message string) {
	m.recorder.Event(containerRef(pod, c), eventType, reason, message)
}
