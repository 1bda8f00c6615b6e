package scheduling

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-helpers/storage/volume"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"
	schedulerconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/volumebinding"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/kubernetes/pkg/scheduler/profile"
)

const nodeName = "vm"

func localVolume(name, claimUID, onNode string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			ClaimRef:               &corev1.ObjectReference{Namespace: "default", Name: "www-web-0", UID: types.UID(claimUID)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/var/lib/stead/storage/" + name}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{onNode}}},
			}}}},
		},
	}
}

func boundClaim(name, uid, volumeName string, annotations map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uid), Annotations: annotations},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: volumeName},
	}
}

func podWithClaim(claim string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0"},
		Spec: corev1.PodSpec{NodeName: nodeName, Volumes: []corev1.Volume{{
			Name:         "www",
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}},
		}}},
	}
}

// newBinder gives a promptBinder whose listers hold objs.
func newBinder(t *testing.T, inner volumebinding.SchedulerVolumeBinder, objs ...any) *promptBinder {
	t.Helper()
	claims := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	volumes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, obj := range objs {
		var err error
		switch obj.(type) {
		case *corev1.PersistentVolumeClaim:
			err = claims.Add(obj)
		case *corev1.PersistentVolume:
			err = volumes.Add(obj)
		case *corev1.Node:
			err = nodes.Add(obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return &promptBinder{
		SchedulerVolumeBinder: inner,
		claims:                corelisters.NewPersistentVolumeClaimLister(claims),
		volumes:               corelisters.NewPersistentVolumeLister(volumes),
		nodes:                 corelisters.NewNodeLister(nodes),
	}
}

func TestAllBoundOnlyWhenUpstreamsCheckWouldPass(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{corev1.LabelHostname: nodeName}}}
	done := map[string]string{volume.AnnBindCompleted: "yes", volume.AnnSelectedNode: nodeName}
	ebs := localVolume("pv-1", "uid-1", nodeName)
	ebs.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}}
	ephemeralPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.PodSpec{NodeName: nodeName, Volumes: []corev1.Volume{{
			Name: "www-0", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}},
		}}},
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		objs []any
		want bool
	}{
		{"bound, provisioned for this node", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", done), localVolume("pv-1", "uid-1", nodeName)}, true},
		{"bound statically (no selected node)", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", map[string]string{volume.AnnBindCompleted: "yes"}), localVolume("pv-1", "uid-1", nodeName)}, true},
		{"an ephemeral volume's claim", ephemeralPod,
			[]any{node, boundClaim("web-www-0", "uid-1", "pv-1", done), localVolume("pv-1", "uid-1", nodeName)}, true},
		{"no claims at all", &corev1.Pod{Spec: corev1.PodSpec{NodeName: nodeName}}, []any{node}, true},
		{"volume named but binding not completed", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", map[string]string{volume.AnnSelectedNode: nodeName}), localVolume("pv-1", "uid-1", nodeName)}, false},
		{"not provisioned yet", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "", map[string]string{volume.AnnSelectedNode: nodeName})}, false},
		{"provisioned for another node", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", map[string]string{volume.AnnBindCompleted: "yes", volume.AnnSelectedNode: "other"}), localVolume("pv-1", "uid-1", nodeName)}, false},
		{"volume usable on another node only", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", done), localVolume("pv-1", "uid-1", "other")}, false},
		{"volume bound to another claim", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", done), localVolume("pv-1", "uid-old", nodeName)}, false},
		{"volume not seen yet", podWithClaim("www-web-0"), []any{node, boundClaim("www-web-0", "uid-1", "pv-1", done)}, false},
		{"claim not seen", podWithClaim("www-web-0"), []any{node}, false},
		{"node not seen", podWithClaim("www-web-0"), []any{boundClaim("www-web-0", "uid-1", "pv-1", done), localVolume("pv-1", "uid-1", nodeName)}, false},
		{"in-tree cloud disk, left to upstream's CSI translation", podWithClaim("www-web-0"),
			[]any{node, boundClaim("www-web-0", "uid-1", "pv-1", done), ebs}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newBinder(t, nil, tc.objs...).allBound(tc.pod); got != tc.want {
				t.Errorf("allBound = %v, want %v", got, tc.want)
			}
		})
	}
}

// slowBinder stands for upstream's binder: it returns what it is given to,
// when it is given to.
type slowBinder struct {
	volumebinding.SchedulerVolumeBinder
	called chan struct{}
	result chan error
}

func (b *slowBinder) BindPodVolumes(ctx context.Context, _ *corev1.Pod, _ *volumebinding.PodVolumes) error {
	close(b.called)
	select {
	case err := <-b.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestBindPodVolumesReturnsOnceBoundWhileUpstreamStillWaits(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{corev1.LabelHostname: nodeName}}}
	inner := &slowBinder{called: make(chan struct{}), result: make(chan error, 1)}
	b := newBinder(t, inner, node, boundClaim("www-web-0", "uid-1", "pv-1", map[string]string{volume.AnnBindCompleted: "yes"}), localVolume("pv-1", "uid-1", nodeName))
	if err := b.BindPodVolumes(context.Background(), podWithClaim("www-web-0"), &volumebinding.PodVolumes{}); err != nil {
		t.Fatalf("claims bound: %v", err)
	}
	select {
	case <-inner.called: // upstream's made its API updates
	case <-time.After(10 * time.Second):
		t.Fatal("upstream's BindPodVolumes was not called")
	}
	inner.result <- nil // and ends on its own
}

func TestBindPodVolumesLeavesUnboundClaimsToUpstream(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{corev1.LabelHostname: nodeName}}}
	inner := &slowBinder{called: make(chan struct{}), result: make(chan error, 1)}
	b := newBinder(t, inner, node, boundClaim("www-web-0", "uid-1", "", map[string]string{volume.AnnSelectedNode: nodeName}))
	failed := errors.New("provisioning failed for PVC \"www-web-0\"")
	go func() {
		<-inner.called
		time.Sleep(5 * boundCheck) // a few looks at the unbound claim first
		inner.result <- failed
	}()
	if err := b.BindPodVolumes(context.Background(), podWithClaim("www-web-0"), &volumebinding.PodVolumes{}); !errors.Is(err, failed) {
		t.Fatalf("BindPodVolumes = %v, want upstream's %v", err, failed)
	}
}

// The configuration file is one upstream's scheduler takes, and its
// profile runs this plugin where it ran VolumeBinding.
func TestConfigurationRunsThePluginInVolumeBindingsPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scheduler.yaml")
	if err := os.WriteFile(path, Configuration("/var/lib/stead/cred/scheduler.kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := options.LoadConfigFromFile(klog.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ClientConnection.Kubeconfig; got != "/var/lib/stead/cred/scheduler.kubeconfig" {
		t.Errorf("kubeconfig %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	sched, err := scheduler.New(ctx, client, informers.NewSharedInformerFactory(client, 0), nil, profile.NewRecorderFactory(broadcaster),
		scheduler.WithProfiles(cfg.Profiles...),
		scheduler.WithFrameworkOutOfTreeRegistry(frameworkruntime.Registry{PromptVolumeBindingName: NewPromptVolumeBinding}))
	if err != nil {
		t.Fatal(err)
	}
	plugins := sched.Profiles["default-scheduler"].ListPlugins()
	for point, set := range map[string][]string{
		"PreFilter": names(plugins.PreFilter.Enabled), "Filter": names(plugins.Filter.Enabled),
		"Reserve": names(plugins.Reserve.Enabled), "PreBind": names(plugins.PreBind.Enabled), "Score": names(plugins.Score.Enabled),
	} {
		if !slices.Contains(set, PromptVolumeBindingName) || slices.Contains(set, "VolumeBinding") {
			t.Errorf("%s plugins %v: want %s and not VolumeBinding", point, set, PromptVolumeBindingName)
		}
	}
}

func names(plugins []schedulerconfig.Plugin) []string {
	var out []string
	for _, p := range plugins {
		out = append(out, p.Name)
	}
	return out
}
