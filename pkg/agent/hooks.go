package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/events"
	"k8s.io/kubernetes/pkg/kubelet/util/format"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
)

// minimumGrace is the least time a container is given between SIGTERM and
// SIGKILL once it is given any, as the kubelet's minimumGracePeriodInSeconds:
// a preStop hook that used up the grace period still leaves the process a
// moment to exit cleanly.
const minimumGrace = 2 * time.Second

// hookHTTPClient is the kubelet's: a pod's certificate cannot be verified,
// and the client must never carry credentials to whatever host a pod names.
var hookHTTPClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	},
	CheckRedirect: httpprobe.RedirectChecker(false),
}

// runHook runs a lifecycle handler against one run of a container, as the
// kubelet's handler runner. The message is for the log only: events say
// just that the hook failed, so that what a command printed (a secret,
// perhaps) does not reach everyone who may read events.
func (m *PodManager) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, podIP string, h *corev1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		code, output, err := m.runtime.ExecSync(ctx, id, h.Exec.Command, 0)
		if err == nil && code != 0 {
			err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), code, output)
		}
		if err != nil {
			return fmt.Sprintf("Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q",
				h.Exec.Command, c.Name, format.Pod(pod), err, string(output)), err
		}
		return "", nil
	case h.HTTPGet != nil:
		if err := m.runHTTPHook(ctx, pod, c, podIP, h.HTTPGet); err != nil {
			return fmt.Sprintf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %v",
				h.HTTPGet.Path, c.Name, format.Pod(pod), err), err
		}
		return "", nil
	case h.Sleep != nil:
		timer := m.clock.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer timer.Stop()
		select {
		case <-timer.C():
			return "", nil
		case <-ctx.Done():
			err := errors.New("container terminated before sleep hook finished")
			return fmt.Sprintf("Sleep lifecycle hook (%d) for Container %q in Pod %q failed - error: %v",
				h.Sleep.Seconds, c.Name, format.Pod(pod), err), err
		}
	}
	err := fmt.Errorf("invalid handler: %v", h)
	return fmt.Sprintf("Cannot run handler: %v", err), err
}

// runHTTPHook GETs the handler's URL. Only a failure to get an answer
// fails the hook, whatever the answer's status, as with the kubelet.
func (m *PodManager) runHTTPHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string, get *corev1.HTTPGetAction) error {
	req, err := httpprobe.NewRequestForHTTPGetAction(get, c, podIP, "lifecycle")
	if err != nil {
		return err
	}
	req = req.WithContext(ctx)
	resp, err := hookHTTPClient.Do(req)
	discardBody(resp)
	if err == nil {
		return nil
	}
	// A server that speaks plain HTTP on an HTTPS hook's port: the kubelet
	// tries again in HTTP, and says so.
	var urlErr *url.Error
	if errors.As(err, &urlErr) && strings.Contains(urlErr.Err.Error(), "server gave HTTP response to HTTPS client") {
		plain := req.Clone(ctx)
		plain.URL.Scheme = "http"
		plain.Header.Del("Authorization")
		resp, plainErr := hookHTTPClient.Do(plain)
		discardBody(resp)
		if plainErr == nil {
			m.recorder.Event(pod, corev1.EventTypeWarning, "LifecycleHTTPFallback",
				fmt.Sprintf("request to HTTPS lifecycle hook %s got HTTP response, retry with HTTP succeeded", req.URL.Host))
			return nil
		}
	}
	return err
}

func discardBody(resp *http.Response) {
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
}

// postStart runs the container's postStart hook, if it has one, right
// after the start. A failed hook kills the run, as the kubelet's does; the
// container is then restarted, or not, by its pod's restart policy.
func (m *PodManager) postStart(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, podIP string) {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return
	}
	msg, err := m.runHook(ctx, pod, c, id, podIP, c.Lifecycle.PostStart)
	if err == nil {
		return
	}
	klog.ErrorS(err, "PostStart hook failed", "pod", klog.KObj(pod), "containerName", c.Name, "message", msg)
	m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedPostStartHook, "PostStartHook failed")
	if err := m.killContainer(ctx, pod, c, id, podIP, "FailedPostStartHook", terminationGrace(pod, nil)); err != nil {
		klog.ErrorS(err, "Kill container after its PostStart hook failed", "pod", klog.KObj(pod), "containerName", c.Name)
	}
}

// killContainer stops a run of a container as the kubelet does: the Killing
// event (message says why), then the preStop hook, within the grace period,
// then SIGTERM and, when what is left of the grace period has passed,
// SIGKILL. c is nil for a container whose spec is not known (a pod deleted
// behind the agent's back): it is just stopped.
func (m *PodManager) killContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, podIP, message string, grace time.Duration) error {
	if c != nil {
		if message == "" {
			message = fmt.Sprintf("Stopping container %s", c.Name)
		}
		m.containerEvent(pod, c, corev1.EventTypeNormal, events.KillingContainer, message)
		if grace > 0 {
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				grace -= m.preStop(ctx, pod, c, id, podIP, grace)
			}
			grace = max(grace, minimumGrace)
		}
	}
	return m.runtime.StopContainer(ctx, id, grace)
}

// preStop runs the container's preStop hook for at most grace, and returns
// the time it took.
func (m *PodManager) preStop(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, podIP string, grace time.Duration) time.Duration {
	start := m.clock.Now()
	hookCtx, cancel := context.WithCancel(ctx)
	defer cancel() // a hook still running when the grace period ends goes with the container
	done := make(chan struct{})
	go func() {
		defer close(done)
		if msg, err := m.runHook(hookCtx, pod, c, id, podIP, c.Lifecycle.PreStop); err != nil {
			klog.ErrorS(err, "PreStop hook failed", "pod", klog.KObj(pod), "containerName", c.Name, "message", msg)
			m.containerEvent(pod, c, corev1.EventTypeWarning, events.FailedPreStopHook, "PreStopHook failed")
		}
	}()
	timer := m.clock.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C():
		klog.V(2).InfoS("PreStop hook not completed in grace period", "pod", klog.KObj(pod), "containerName", c.Name, "gracePeriod", grace)
	}
	return m.clock.Since(start)
}

// terminationGrace is how long a container being stopped may take, as the
// kubelet's setTerminationGracePeriod: the deletion's grace period if the
// pod is being deleted, else the failed probe's own, else the pod's.
func terminationGrace(pod *corev1.Pod, failed *corev1.Probe) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case failed != nil && failed.TerminationGracePeriodSeconds != nil:
		return time.Duration(*failed.TerminationGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second // the API's default
}
