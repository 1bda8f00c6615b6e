package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// podStatus is the status the kubelet would write for what runs now. Times
// of conditions that did not change are kept, so that an unchanged pod
// compares equal and costs no write.
func (m *PodManager) podStatus(ctx context.Context, pod *corev1.Pod, rec *podRecord) corev1.PodStatus {
	status := corev1.PodStatus{
		HostIP:    m.hostIP,
		HostIPs:   []corev1.HostIP{{IP: m.hostIP}},
		StartTime: &rec.startTime,
		QOSClass:  pod.Status.QOSClass,
	}
	if rec.podIP != "" {
		status.PodIP = rec.podIP
		status.PodIPs = []corev1.PodIP{{IP: rec.podIP}}
	}
	status.InitContainerStatuses = m.containerStatuses(ctx, rec, pod.Spec.InitContainers, "PodInitializing", true)
	initialized, initFailed := true, false
	for _, cs := range status.InitContainerStatuses {
		if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
			initialized = false
			initFailed = initFailed || t != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever
		}
	}
	waitingReason := "ContainerCreating"
	if !initialized {
		waitingReason = "PodInitializing"
	}
	status.ContainerStatuses = m.containerStatuses(ctx, rec, pod.Spec.Containers, waitingReason, false)
	status.Phase = podPhase(pod.Spec.RestartPolicy, initialized, initFailed, status.ContainerStatuses)
	if len(pod.Spec.EphemeralContainers) > 0 {
		ephemeral := make([]corev1.Container, len(pod.Spec.EphemeralContainers))
		for i := range pod.Spec.EphemeralContainers {
			ephemeral[i] = *ephemeralContainer(&pod.Spec.EphemeralContainers[i])
		}
		// Never ready: readiness is the pod's containers' alone.
		status.EphemeralContainerStatuses = m.containerStatuses(ctx, rec, ephemeral, "ContainerCreating", true)
	}
	m.prober.updatePodStatus(pod, &status)

	containersReady := initialized
	for _, cs := range status.ContainerStatuses {
		containersReady = containersReady && cs.Ready
	}
	sandboxReady := rec.podIP != ""
	status.Conditions = mergeConditions(pod.Status.Conditions, []corev1.PodCondition{
		condition(corev1.PodReadyToStartContainers, sandboxReady, ""),
		condition(corev1.PodInitialized, initialized, "ContainersNotInitialized"),
		condition(corev1.ContainersReady, containersReady, "ContainersNotReady"),
		condition(corev1.PodReady, containersReady, "ContainersNotReady"),
	})
	return status
}

func condition(t corev1.PodConditionType, ok bool, reasonIfNot string) corev1.PodCondition {
	c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
	if !ok {
		c.Status, c.Reason = corev1.ConditionFalse, reasonIfNot
	}
	return c
}

// mergeConditions sets ours over the pod's (keeping PodScheduled and any
// other writer's), with transition times that move only on a transition.
func mergeConditions(old, ours []corev1.PodCondition) []corev1.PodCondition {
	now := metav1.Now()
	merged := make([]corev1.PodCondition, 0, len(old)+len(ours))
	for _, o := range old {
		if !hasCondition(ours, o.Type) {
			merged = append(merged, o)
		}
	}
	for _, c := range ours {
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
				c.LastProbeTime = o.LastProbeTime
			}
		}
		merged = append(merged, c)
	}
	return merged
}

func hasCondition(list []corev1.PodCondition, t corev1.PodConditionType) bool {
	for _, c := range list {
		if c.Type == t {
			return true
		}
	}
	return false
}

// containerStatuses reports each container of specs. waitingReason is what
// a container that was never created waits for; neverReady containers
// (init and ephemeral ones) are not ready even while they run.
func (m *PodManager) containerStatuses(ctx context.Context, rec *podRecord, specs []corev1.Container, waitingReason string, neverReady bool) []corev1.ContainerStatus {
	if len(specs) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, 0, len(specs))
	for _, c := range specs {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptr.To(false)}
		cr := rec.containers[c.Name]
		if cr == nil {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitingReason}
			out = append(out, cs)
			continue
		}
		cs.RestartCount = cr.restartCount
		cs.LastTerminationState = cr.lastState
		var st ContainerState
		var known bool
		if cr.id != "" {
			var err error
			st, err = m.runtime.ContainerState(ctx, cr.id)
			known = err == nil
			if known {
				cs.ContainerID, cs.ImageID = containerID(cr.id), st.ImageID
			}
		}
		switch {
		case known && st.Running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(st.StartedAt)}
			cs.Started = ptr.To(true)
			// Without probes a running container is ready (the prober
			// says otherwise for one with them).
			cs.Ready = !neverReady
		case cr.waiting != nil:
			// Not started, or exited and waiting out its back-off: then
			// this exit is the last state.
			cs.State.Waiting = cr.waiting.DeepCopy()
			if known {
				cs.LastTerminationState = corev1.ContainerState{Terminated: terminatedState(cr.id, st)}
			}
		case known:
			cs.State.Terminated = terminatedState(cr.id, st)
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waitingReason}
		}
		out = append(out, cs)
	}
	return out
}

// podPhase follows the kubelet's getPhase.
func podPhase(policy corev1.RestartPolicy, initialized, initFailed bool, statuses []corev1.ContainerStatus) corev1.PodPhase {
	if initFailed {
		return corev1.PodFailed
	}
	if !initialized {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++ // crash-looping: it has run and will again
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0 && policy == corev1.RestartPolicyAlways:
		return corev1.PodRunning
	case stopped > 0 && stopped == succeeded:
		return corev1.PodSucceeded
	case stopped > 0 && policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	case stopped > 0:
		return corev1.PodRunning
	}
	return corev1.PodPending
}
