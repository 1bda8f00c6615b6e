package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Back-off between restarts of a failing container, as the kubelet's:
// 10 s doubling to 5 min, forgotten once the container has run 10 min.
const (
	initialBackoff = 10 * time.Second
	maxBackoff     = 5 * time.Minute
	backoffReset   = 2 * maxBackoff
	// pollInterval is how often a live pod's containers are looked at.
	pollInterval = time.Second
)

// PodManager runs the pods bound to one node: it starts their containers in
// order, restarts them by their policy, stops them when the pod is deleted
// and writes the pod status the kubelet would. Its sync is level-triggered:
// every pass compares the pod's spec with what runs and mends the gap.
type PodManager struct {
	nodeName string
	hostIP   string
	client   kubernetes.Interface
	runtime  ContainerRuntime
	lister   corelisters.PodLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	clock    clock.Clock
	recorder record.EventRecorder
	prober   *prober

	// fenced, when set, says the node has fenced itself (fence.go): no
	// container may start, and a pod synced while fenced is checked
	// against the API server itself, not the informer's cache, before it
	// runs again.
	fenced func() bool

	mu   sync.Mutex
	pods map[types.UID]*podRecord
	// unverified are the pods synced while the node was fenced.
	unverified map[types.UID]bool
}

// podRecord is what the agent remembers of a pod between syncs.
type podRecord struct {
	key        string // namespace/name
	podIP      string
	startTime  metav1.Time
	containers map[string]*containerRecord
}

type containerRecord struct {
	id           string
	restartCount int32
	lastState    corev1.ContainerState // the previous run's termination
	waiting      *corev1.ContainerStateWaiting
	backoff      time.Duration
	notBefore    time.Time
	// probeKilled: this run was killed for a failed liveness or startup
	// probe, and is restarted whatever its exit code.
	probeKilled bool
}

// NewPodManager watches the pods of podInformer, which must be filtered to
// this node (spec.nodeName).
func NewPodManager(nodeName, hostIP string, client kubernetes.Interface, runtime ContainerRuntime, podInformer coreinformers.PodInformer) *PodManager {
	m := &PodManager{
		nodeName: nodeName,
		hostIP:   hostIP,
		client:   client,
		runtime:  runtime,
		lister:   podInformer.Lister(),
		synced:   podInformer.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods"}),
		clock: clock.RealClock{},
		// Events go nowhere until Run has somewhere to send them.
		recorder:   &record.FakeRecorder{},
		pods:       map[types.UID]*podRecord{},
		unverified: map[types.UID]bool{},
	}
	m.prober = newProber(m)
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			m.queue.Add(key)
		}
	}
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	return m
}

// volumeRefresher is a runtime that keeps a running pod's configMap,
// secret and downward API volumes up to date.
type volumeRefresher interface {
	RefreshVolumes(ctx context.Context, pod *corev1.Pod) error
}

// FenceWith makes the pod manager hold every container while fenced
// reports true; call it before Run.
func (m *PodManager) FenceWith(fenced func() bool) { m.fenced = fenced }

// Run syncs pods with the given number of workers until ctx ends.
func (m *PodManager) Run(ctx context.Context, workers int) {
	defer m.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), m.synced) {
		return
	}
	// Events as the kubelet writes them, so that `kubectl describe pod`
	// shows probe failures, kills and failed hooks from "kubelet".
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	m.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: m.nodeName})
	for range workers {
		go wait.UntilWithContext(ctx, m.worker, time.Second)
	}
	<-ctx.Done()
}

func (m *PodManager) worker(ctx context.Context) {
	for {
		key, quit := m.queue.Get()
		if quit {
			return
		}
		requeue, err := m.sync(ctx, key)
		switch {
		case err != nil:
			utilruntime.HandleErrorWithContext(ctx, err, "sync pod", "pod", key)
			m.queue.AddRateLimited(key)
		case requeue > 0:
			m.queue.Forget(key)
			m.queue.AddAfter(key, requeue)
		default:
			m.queue.Forget(key)
		}
		m.queue.Done(key)
	}
}

// sync brings one pod's containers and status in line with its spec. It
// returns when to look again while the pod lives.
func (m *PodManager) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, err
	}
	pod, err := m.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Deleted without us (forced): whatever still runs for it must go.
		return 0, m.forgetPodsNamed(ctx, ns, name, nil)
	}
	if err != nil {
		return 0, err
	}
	if pod.Spec.NodeName != m.nodeName {
		return 0, nil
	}
	if m.fenced != nil && m.fenced() {
		m.mu.Lock()
		m.unverified[pod.UID] = true
		m.mu.Unlock()
		return time.Second, nil
	}
	if gone, err := m.verifyAfterFence(ctx, pod); err != nil || gone {
		return 0, err
	}
	// A pod of the same name but another UID replaced the one we ran.
	if err := m.forgetPodsNamed(ctx, ns, name, pod); err != nil {
		return 0, err
	}
	if pod.DeletionTimestamp != nil {
		return 0, m.terminate(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		m.prober.removePod(pod.UID)
		return 0, nil
	}

	rec := m.record(pod)
	m.prober.addPod(ctx, pod)
	if rec.podIP == "" {
		ip, err := m.runtime.EnsureSandbox(ctx, pod)
		if err != nil {
			// The containers only say ContainerCreating: the event says why.
			m.recorder.Eventf(pod, corev1.EventTypeWarning, events.FailedCreatePodSandBox, "Failed to create pod sandbox: %v", err)
			return 0, m.updateStatus(ctx, pod, rec, fmt.Errorf("sandbox: %w", err))
		}
		rec.podIP = ip
	}
	now := m.clock.Now()
	initDone, initFailed, err := m.syncInitContainers(ctx, pod, rec, now)
	if err == nil && initDone && !initFailed {
		err = m.syncContainers(ctx, pod, rec, now)
	}
	// As the kubelet, ephemeral containers start even while the pod's
	// initialization is still going on: it may be what they debug.
	err = errors.Join(err, m.syncEphemeralContainers(ctx, pod, rec, now))
	if err := m.updateStatus(ctx, pod, rec, err); err != nil {
		return 0, err
	}
	if r, ok := m.runtime.(volumeRefresher); ok && initDone {
		if err := r.RefreshVolumes(ctx, pod); err != nil {
			klog.ErrorS(err, "refresh volumes", "pod", klog.KObj(pod))
		}
	}
	if initFailed || m.allStoppedForGood(pod, rec) {
		return 0, nil
	}
	return pollInterval, nil
}

// verifyAfterFence asks the API server whether a pod synced while the
// node was fenced still is this node's: the informer may not have seen
// yet that the server deleted it, and that another node runs it now.
// gone is true when it is not, once what ran for it here is stopped.
func (m *PodManager) verifyAfterFence(ctx context.Context, pod *corev1.Pod) (gone bool, err error) {
	m.mu.Lock()
	check := m.unverified[pod.UID]
	m.mu.Unlock()
	if !check {
		return false, nil
	}
	live, err := m.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	// Forbidden: the Node authorizer no longer relates the pod of that
	// name to this node, because another node has it now.
	lost := apierrors.IsNotFound(err) || apierrors.IsForbidden(err)
	if err != nil && !lost {
		return false, err
	}
	gone = lost || live.UID != pod.UID || live.Spec.NodeName != m.nodeName
	if gone {
		// Still unverified: until the informer drops it, each sync asks
		// again, and it never runs here again.
		ghost := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}
		return true, m.stopAll(ctx, ghost, pod.UID, 0)
	}
	m.mu.Lock()
	delete(m.unverified, pod.UID)
	m.mu.Unlock()
	return gone, nil
}

func (m *PodManager) record(pod *corev1.Pod) *podRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.pods[pod.UID]
	if rec == nil {
		rec = &podRecord{key: pod.Namespace + "/" + pod.Name, startTime: metav1.NewTime(m.clock.Now()), containers: map[string]*containerRecord{}}
		if pod.Status.StartTime != nil {
			rec.startTime = *pod.Status.StartTime
		}
		// A pod this node ran before the agent restarted: adopt what its
		// status says runs, rather than start it a second time.
		rec.podIP = pod.Status.PodIP
		for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
			for _, cs := range statuses {
				if id, ok := strings.CutPrefix(cs.ContainerID, "stead://"); ok {
					rec.containers[cs.Name] = &containerRecord{id: id, restartCount: cs.RestartCount, lastState: cs.LastTerminationState}
					m.prober.adopt(pod.UID, cs, id)
				}
			}
		}
		m.pods[pod.UID] = rec
	}
	return rec
}

// syncInitContainers runs init containers one at a time, in order; each must
// succeed before the next starts.
func (m *PodManager) syncInitContainers(ctx context.Context, pod *corev1.Pod, rec *podRecord, now time.Time) (done, failed bool, err error) {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st, cr, err := m.observe(ctx, rec, c.Name)
		if err != nil {
			return false, false, err
		}
		switch {
		case cr == nil || cr.id == "":
			return false, false, m.start(ctx, pod, rec, c, now)
		case st.Running:
			return false, false, nil
		case st.ExitCode == 0:
			continue
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			return false, true, nil
		default:
			return false, false, m.restart(ctx, pod, rec, c, cr, st, now)
		}
	}
	return true, false, nil
}

func (m *PodManager) syncContainers(ctx context.Context, pod *corev1.Pod, rec *podRecord, now time.Time) error {
	var errs []error
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st, cr, err := m.observe(ctx, rec, c.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case cr == nil || cr.id == "":
			errs = append(errs, m.start(ctx, pod, rec, c, now))
		case st.Running:
			if kind, failed := m.prober.failedProbe(pod.UID, c.Name, cr.id); failed {
				errs = append(errs, m.killUnhealthy(ctx, pod, rec, c, cr, kind))
			}
		case shouldRestart(pod.Spec.RestartPolicy, st.ExitCode) || cr.probeKilled:
			errs = append(errs, m.restart(ctx, pod, rec, c, cr, st, now))
		}
	}
	return errors.Join(errs...)
}

// syncEphemeralContainers starts each ephemeral container (`kubectl
// debug`) once it is added to the pod. They are never restarted, whatever
// the pod's restart policy, and never probed.
func (m *PodManager) syncEphemeralContainers(ctx context.Context, pod *corev1.Pod, rec *podRecord, now time.Time) error {
	var errs []error
	for i := range pod.Spec.EphemeralContainers {
		c := ephemeralContainer(&pod.Spec.EphemeralContainers[i])
		if cr := rec.containers[c.Name]; cr == nil || cr.id == "" {
			errs = append(errs, m.start(ctx, pod, rec, c, now))
		}
	}
	return errors.Join(errs...)
}

// ephemeralContainer is an ephemeral container's spec as a container's:
// the fields they share are the same struct, as the kubelet treats them.
func ephemeralContainer(ec *corev1.EphemeralContainer) *corev1.Container {
	return (*corev1.Container)(&ec.EphemeralContainerCommon)
}

// killUnhealthy kills a run that failed its liveness or startup probe and,
// unless the pod never restarts its containers, starts the next one, as the
// kubelet does in the same sync.
func (m *PodManager) killUnhealthy(ctx context.Context, pod *corev1.Pod, rec *podRecord, c *corev1.Container, cr *containerRecord, failed probeType) error {
	message := fmt.Sprintf("Container %s failed %s probe", c.Name, strings.ToLower(failed.String()))
	restart := pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	if restart {
		message += ", will be restarted"
	}
	if err := m.killContainer(ctx, pod, c, cr.id, rec.podIP, message, terminationGrace(pod, failed.of(c))); err != nil {
		return err
	}
	cr.probeKilled = restart
	if !restart {
		return nil
	}
	st, err := m.runtime.ContainerState(ctx, cr.id)
	if err != nil {
		return err
	}
	return m.restart(ctx, pod, rec, c, cr, st, m.clock.Now())
}

func shouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// observe returns the runtime's view of the named container, if it has run.
func (m *PodManager) observe(ctx context.Context, rec *podRecord, name string) (ContainerState, *containerRecord, error) {
	cr := rec.containers[name]
	if cr == nil || cr.id == "" {
		return ContainerState{}, cr, nil
	}
	st, err := m.runtime.ContainerState(ctx, cr.id)
	return st, cr, err
}

func (m *PodManager) start(ctx context.Context, pod *corev1.Pod, rec *podRecord, c *corev1.Container, now time.Time) error {
	cr := rec.containers[c.Name]
	if cr == nil {
		cr = &containerRecord{}
		rec.containers[c.Name] = cr
	}
	if now.Before(cr.notBefore) {
		// Still backing off; the waiting reason says so.
		if cr.waiting != nil && cr.waiting.Reason == "ErrImagePull" {
			cr.waiting.Reason = "ImagePullBackOff"
			m.containerEvent(pod, c, corev1.EventTypeNormal, events.BackOffPullImage, fmt.Sprintf("Back-off pulling image %q", c.Image))
		}
		return nil
	}
	pulling := func() {
		m.containerEvent(pod, c, corev1.EventTypeNormal, events.PullingImage, fmt.Sprintf("Pulling image %q", c.Image))
	}
	pulled, err := m.runtime.PullImage(ctx, pod, c, pulling)
	id := ""
	if err == nil {
		m.imagePulled(pod, c, pulled)
		id, err = m.runtime.StartContainer(ctx, pod, c, pulled.Image, rec.podIP, cr.restartCount)
	}
	var imageErr *ImageError
	switch {
	case errors.As(err, &imageErr):
		m.imageFailed(pod, c, imageErr)
		cr.waiting = &corev1.ContainerStateWaiting{Reason: imageErr.Reason, Message: imageErr.Message}
		m.backOff(cr, now, "ImagePullBackOff")
		return nil
	case err != nil:
		m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedToCreateContainer, "Error: "+err.Error())
		cr.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		m.backOff(cr, now, "")
		return nil
	}
	m.containerEvent(pod, c, corev1.EventTypeNormal, events.CreatedContainer, "Container created")
	m.containerEvent(pod, c, corev1.EventTypeNormal, events.StartedContainer, "Container started")
	cr.id, cr.waiting, cr.notBefore = id, nil, time.Time{}
	m.postStart(ctx, pod, c, id, rec.podIP)
	return nil
}

// imagePulled records the kubelet's event for an image made present.
func (m *PodManager) imagePulled(pod *corev1.Pod, c *corev1.Container, p ImagePull) {
	message := fmt.Sprintf("Container image %q already present on machine", c.Image)
	if p.Fetched {
		took := p.Duration.Truncate(time.Millisecond)
		message = fmt.Sprintf("Successfully pulled image %q in %v (%v including waiting). Image size: %d bytes.", c.Image, took, took, p.Image.Size)
	}
	m.containerEvent(pod, c, corev1.EventTypeNormal, events.PulledImage, message)
}

// imageFailed records the kubelet's two events for an image that could
// not be had: why, then the error the container waits with.
func (m *PodManager) imageFailed(pod *corev1.Pod, c *corev1.Container, e *ImageError) {
	switch e.Reason {
	case "ErrImageNeverPull":
		m.containerEvent(pod, c, corev1.EventTypeWarning, events.ErrImageNeverPullPolicy, fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image))
	case "InvalidImageName":
		m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedToInspectImage, fmt.Sprintf("Failed to apply default image tag %q: %s", c.Image, e.Message))
	default:
		m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedToPullImage, fmt.Sprintf("Failed to pull image %q: %s", c.Image, e.Message))
	}
	m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedToCreateContainer, "Error: "+e.Reason)
}

// restart replaces an exited container once its back-off has passed.
func (m *PodManager) restart(ctx context.Context, pod *corev1.Pod, rec *podRecord, c *corev1.Container, cr *containerRecord, st ContainerState, now time.Time) error {
	if cr.notBefore.IsZero() {
		// Just seen exiting. As the kubelet, restart at once after a first
		// failure (or a long run), then back off from each exit.
		if st.FinishedAt.Sub(st.StartedAt) >= backoffReset {
			cr.backoff = 0
		}
		if cr.backoff == 0 {
			cr.backoff = initialBackoff / 2 // the next failure waits initialBackoff
			cr.notBefore = st.FinishedAt
		} else {
			m.backOff(cr, st.FinishedAt, "CrashLoopBackOff")
			cr.waiting.Message = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", cr.backoff, c.Name, pod.Name, pod.Namespace, pod.UID)
			m.containerEvent(pod, c, corev1.EventTypeWarning, events.BackOffStartContainer,
				fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID))
		}
	}
	if now.Before(cr.notBefore) {
		return nil
	}
	if err := m.runtime.RemoveContainer(ctx, cr.id); err != nil {
		return err
	}
	cr.lastState = corev1.ContainerState{Terminated: terminatedState(cr.id, st)}
	cr.id, cr.notBefore, cr.probeKilled = "", time.Time{}, false
	cr.restartCount++
	return m.start(ctx, pod, rec, c, now)
}

func (m *PodManager) backOff(cr *containerRecord, from time.Time, reason string) {
	cr.backoff = min(max(2*cr.backoff, initialBackoff), maxBackoff)
	cr.notBefore = from.Add(cr.backoff)
	if reason != "" && cr.waiting == nil {
		cr.waiting = &corev1.ContainerStateWaiting{Reason: reason}
	}
}

func terminatedState(id string, st ContainerState) *corev1.ContainerStateTerminated {
	reason := st.Reason
	if reason == "" {
		reason = "Completed"
		if st.ExitCode != 0 {
			reason = "Error"
		}
	}
	return &corev1.ContainerStateTerminated{
		ExitCode: st.ExitCode, Reason: reason, Message: st.Message,
		StartedAt: metav1.NewTime(st.StartedAt), FinishedAt: metav1.NewTime(st.FinishedAt),
		ContainerID: containerID(id),
	}
}

func containerID(id string) string { return "stead://" + id }

// allStoppedForGood is true when no container will run again.
func (m *PodManager) allStoppedForGood(pod *corev1.Pod, rec *podRecord) bool {
	for _, c := range pod.Spec.Containers {
		cr := rec.containers[c.Name]
		if cr == nil || cr.id == "" {
			return false
		}
		st, err := m.runtime.ContainerState(context.Background(), cr.id)
		if err != nil || st.Running || shouldRestart(pod.Spec.RestartPolicy, st.ExitCode) {
			return false
		}
	}
	return true
}

// terminate stops a deleted pod's containers and only then removes the pod
// from the API: a pod object that still exists means its processes may
// still run, which is what keeps one StatefulSet identity to one pod.
func (m *PodManager) terminate(ctx context.Context, pod *corev1.Pod) error {
	if err := m.stopAll(ctx, pod, pod.UID, terminationGrace(pod, nil)); err != nil {
		return err
	}
	err := m.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// stopAll stops and removes every container of the pod with this UID, then
// its sandbox, and forgets it. Running containers of a pod whose spec is
// known get their preStop hooks first.
func (m *PodManager) stopAll(ctx context.Context, pod *corev1.Pod, uid types.UID, grace time.Duration) error {
	// No probe may kill or restart a container that is being stopped.
	m.prober.removePod(uid)
	m.mu.Lock()
	rec := m.pods[uid]
	m.mu.Unlock()
	if rec != nil {
		var wg sync.WaitGroup
		errs := make([]error, 0, len(rec.containers))
		var errMu sync.Mutex
		for name, cr := range rec.containers {
			if cr.id == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := containerSpec(pod, name)
				if st, err := m.runtime.ContainerState(ctx, cr.id); err != nil || !st.Running {
					c = nil // nothing to run a hook in, nor to tell of
				}
				err := m.killContainer(ctx, pod, c, cr.id, rec.podIP, "", grace)
				if err == nil {
					err = m.runtime.RemoveContainer(ctx, cr.id)
				}
				errMu.Lock()
				if err == nil {
					// Gone for good: a retry of this stop (its sandbox not
					// removed yet) must not look for it again.
					cr.id = ""
				}
				errs = append(errs, err)
				errMu.Unlock()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if err := m.runtime.RemoveSandbox(ctx, pod); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.pods, uid)
	m.mu.Unlock()
	return nil
}

func containerSpec(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return ephemeralContainer(&pod.Spec.EphemeralContainers[i])
		}
	}
	return nil
}

// forgetPodsNamed stops what runs for ns/name under any UID but keep's:
// the pod was deleted behind the agent's back, or replaced by a new one.
func (m *PodManager) forgetPodsNamed(ctx context.Context, ns, name string, keep *corev1.Pod) error {
	key := ns + "/" + name
	m.mu.Lock()
	var stale []types.UID
	for uid, rec := range m.pods {
		if rec.key == key && (keep == nil || uid != keep.UID) {
			stale = append(stale, uid)
		}
	}
	m.mu.Unlock()
	for _, uid := range stale {
		ghost := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid}}
		if err := m.stopAll(ctx, ghost, uid, 0); err != nil {
			return err
		}
	}
	return nil
}

// updateStatus writes the pod's status if it changed.
func (m *PodManager) updateStatus(ctx context.Context, pod *corev1.Pod, rec *podRecord, syncErr error) error {
	status := m.podStatus(ctx, pod, rec)
	if syncErr != nil {
		klog.ErrorS(syncErr, "sync pod", "pod", klog.KObj(pod))
	}
	if apiequality.Semantic.DeepEqual(status, pod.Status) {
		return syncErr
	}
	updated := pod.DeepCopy()
	updated.Status = status
	if _, err := m.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return syncErr
}
