package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/steadhq/stead/pkg/image"
)

// ContainerRuntime is what the agent needs of the node's runtime. The pod
// logic (ordering, restarts, back-off, status) is the agent's; the runtime
// only makes sandboxes and runs processes, so the logic is tested without
// root against a fake.
type ContainerRuntime interface {
	// EnsureSandbox makes the pod's sandbox (its network namespace) if it
	// does not exist yet, and returns the pod's IP.
	EnsureSandbox(ctx context.Context, pod *corev1.Pod) (podIP string, err error)
	RemoveSandbox(ctx context.Context, pod *corev1.Pod) error
	// PullImage makes the container's image present, as its pull policy
	// says, with the pod's imagePullSecrets; it calls pulling just before
	// it asks the registry. An *ImageError says the image could not be had.
	PullImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, pulling func()) (ImagePull, error)
	// StartContainer starts the container from the image PullImage made
	// present.
	StartContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img image.Image, podIP string, restartCount int32) (id string, err error)
	ContainerState(ctx context.Context, id string) (ContainerState, error)
	// StopContainer sends SIGTERM, waits up to grace, then SIGKILLs; it
	// returns once the container's processes are gone.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	// ExecSync runs cmd in the running container and returns its exit code
	// and its output, stdout and stderr together. A command still running
	// after timeout (none if zero) is killed, and the error then wraps
	// context.DeadlineExceeded. Probes and lifecycle hooks run this way.
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (exitCode int, output []byte, err error)
}

// ContainerState is what the runtime knows of one container.
type ContainerState struct {
	Running    bool
	ExitCode   int32
	Reason     string // for a terminated container: Completed, Error, OOMKilled…
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
	ImageID    string
}

// ImagePull is what PullImage did, for the events the kubelet records.
type ImagePull struct {
	Image    image.Image
	Fetched  bool // from its registry: it was not present, or the policy is Always
	Duration time.Duration
}

// ImageError is a failure to get a container's image, reported in the
// container's waiting state as the kubelet reports it.
type ImageError struct {
	Reason  string // ErrImagePull, ErrImageNeverPull, InvalidImageName
	Message string
}

func (e *ImageError) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Message) }
