// Package scheduling holds what stead changes in the upstream scheduler it
// runs in-process.
//
// Upstream's VolumeBinding plugin, once it has asked for a pod's claims to
// be provisioned or bound (PreBind), waits for the binding with a poll
// whose first look is a full second later (volumebinding.BindPodVolumes:
// wait.PollUntilContextTimeout(ctx, time.Second, ..., false, ...)). stead's
// local volumes are provisioned and bound in tens of milliseconds, so every
// pod with a new claim waited about a second for nothing, and an
// OrderedReady StatefulSet with volumeClaimTemplates paid it once per
// ordinal. PromptVolumeBinding is upstream's plugin, built by upstream's
// constructor, whose binder also looks at the claims every 10 ms and lets
// the pod go on as soon as they are bound the way upstream's own check
// requires; when they are not, upstream's binder decides, as before.
package scheduling

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/component-helpers/storage/ephemeral"
	"k8s.io/component-helpers/storage/volume"
	configv1 "k8s.io/kube-scheduler/config/v1"
	fwk "k8s.io/kube-scheduler/framework"
	schedulerconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/volumebinding"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
)

// PromptVolumeBindingName is the plugin's name in the scheduler's profile,
// where it takes VolumeBinding's place (Configuration).
const PromptVolumeBindingName = "PromptVolumeBinding"

// Configuration is the scheduler's configuration file: upstream's defaults,
// with PromptVolumeBinding for VolumeBinding, and the kubeconfig given.
func Configuration(kubeconfig string) []byte {
	return fmt.Appendf(nil, `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
enableProfiling: false
profiles:
- schedulerName: default-scheduler
  plugins:
    multiPoint:
      enabled:
      - name: %s
      disabled:
      - name: VolumeBinding
`, kubeconfig, PromptVolumeBindingName)
}

// boundCheck is how often a pod's claims are looked at while it waits.
const boundCheck = 10 * time.Millisecond

// NewPromptVolumeBinding builds upstream's VolumeBinding plugin with its
// own arguments (VolumeBindingArgs, upstream's defaults where the profile
// gives none) and the same feature gates as the in-tree registry, and gives
// it the prompt binder.
func NewPromptVolumeBinding(ctx context.Context, obj runtime.Object, fh fwk.Handle) (fwk.Plugin, error) {
	args, err := volumeBindingArgs(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PromptVolumeBindingName, err)
	}
	fts := plfeature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate)
	pl, err := volumebinding.New(ctx, args, fh, fts)
	if err != nil {
		return nil, err
	}
	vb, ok := pl.(*volumebinding.VolumeBinding)
	if !ok {
		return nil, fmt.Errorf("upstream's VolumeBinding plugin is a %T, not *volumebinding.VolumeBinding", pl)
	}
	informers := fh.SharedInformerFactory().Core().V1()
	vb.Binder = &promptBinder{
		SchedulerVolumeBinder: vb.Binder,
		claims:                informers.PersistentVolumeClaims().Lister(),
		volumes:               informers.PersistentVolumes().Lister(),
		nodes:                 informers.Nodes().Lister(),
	}
	return promptVolumeBinding{vb}, nil
}

// promptVolumeBinding is upstream's plugin under this plugin's name, which
// the framework matches with the profile's (score weights, queueing hints).
type promptVolumeBinding struct{ *volumebinding.VolumeBinding }

func (promptVolumeBinding) Name() string { return PromptVolumeBindingName }

// promptBinder is upstream's binder with a quicker end to BindPodVolumes.
type promptBinder struct {
	volumebinding.SchedulerVolumeBinder
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	nodes   corelisters.NodeLister
}

// BindPodVolumes runs upstream's, which makes the API updates and then
// waits, and returns as soon as either upstream's has returned or the
// pod's claims are all bound on its node. In the second case upstream's
// goes on until its next look (a second at most), on a context of its own,
// so that it ends as it would have rather than cancelled and counted as a
// failure; it is cancelled only with ctx.
func (b *promptBinder) BindPodVolumes(ctx context.Context, assumedPod *corev1.Pod, podVolumes *volumebinding.PodVolumes) error {
	upstreamCtx, cancelUpstream := context.WithCancel(context.WithoutCancel(ctx))
	upstream := make(chan error, 1)
	go func() {
		defer cancelUpstream()
		upstream <- b.SchedulerVolumeBinder.BindPodVolumes(upstreamCtx, assumedPod, podVolumes)
	}()
	tick := time.NewTicker(boundCheck)
	defer tick.Stop()
	for {
		select {
		case err := <-upstream:
			return err
		case <-ctx.Done():
			cancelUpstream()
			return ctx.Err()
		case <-tick.C:
			if b.allBound(assumedPod) {
				return nil
			}
		}
	}
}

// allBound tells whether every claim of the pod is bound as upstream's
// check (checkBindings) wants it before the pod may be bound: the claim
// fully bound by the PV controller, provisioned for the pod's node if it
// was provisioned for one, its volume bound to this claim and usable on the
// node. It is stricter where upstream's is subtle: volumes that upstream
// would first translate to CSI (in-tree cloud disks) are left to upstream.
func (b *promptBinder) allBound(pod *corev1.Pod) bool {
	node, err := b.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		return false
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		var name string
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = ephemeral.VolumeClaimName(pod, v)
		default:
			continue
		}
		claim, err := b.claims.PersistentVolumeClaims(pod.Namespace).Get(name)
		if err != nil || claim.Spec.VolumeName == "" || !metav1.HasAnnotation(claim.ObjectMeta, volume.AnnBindCompleted) {
			return false
		}
		if selected, ok := claim.Annotations[volume.AnnSelectedNode]; ok && selected != node.Name {
			return false
		}
		pv, err := b.volumes.Get(claim.Spec.VolumeName)
		if err != nil || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
			return false
		}
		if pv.Spec.Local == nil && pv.Spec.HostPath == nil && pv.Spec.CSI == nil {
			return false
		}
		if volume.CheckNodeAffinity(pv, node.Labels) != nil {
			return false
		}
	}
	return true
}

// volumeBindingArgs decodes the plugin's arguments as VolumeBindingArgs,
// with upstream's defaults: a profile gives an out-of-tree plugin's
// arguments undecoded, or none.
func volumeBindingArgs(obj runtime.Object) (*schedulerconfig.VolumeBindingArgs, error) {
	if args, ok := obj.(*schedulerconfig.VolumeBindingArgs); ok {
		return args, nil
	}
	var external configv1.VolumeBindingArgs
	if obj != nil {
		if err := frameworkruntime.DecodeInto(obj, &external); err != nil {
			return nil, err
		}
	}
	schedulerscheme.Scheme.Default(&external)
	args := &schedulerconfig.VolumeBindingArgs{}
	if err := schedulerscheme.Scheme.Convert(&external, args, nil); err != nil {
		return nil, err
	}
	return args, nil
}
