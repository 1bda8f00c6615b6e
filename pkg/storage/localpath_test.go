package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

type harness struct {
	t       testing.TB
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	l       *LocalPath
	root    string
}

func newHarness(t testing.TB, objects ...runtime.Object) *harness {
	client := fake.NewClientset(objects...)
	if err := EnsureClass(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	root := t.TempDir()
	// Runs before TempDir's removal, which a mount under root would fail.
	t.Cleanup(func() { cleanupVolumes(t, root) })
	h := &harness{t: t, client: client, factory: factory, root: root, l: NewLocalPath("node-a", root, client, factory)}
	return h
}

// sync refreshes the listers from the fake API and syncs key.
func (h *harness) sync(key string) {
	h.t.Helper()
	if err := h.trySync(key); err != nil {
		h.t.Fatalf("sync %s: %v", key, err)
	}
}

func (h *harness) trySync(key string) error {
	h.refresh()
	return h.l.sync(context.Background(), key)
}

// refresh makes the informers' caches what the fake API holds.
func (h *harness) refresh() {
	ctx := context.Background()
	pvcs, _ := h.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	pvIndexer := h.factory.Core().V1().PersistentVolumes().Informer().GetIndexer()
	pvcIndexer := h.factory.Core().V1().PersistentVolumeClaims().Informer().GetIndexer()
	classIndexer := h.factory.Storage().V1().StorageClasses().Informer().GetIndexer()
	for _, obj := range pvcIndexer.List() {
		_ = pvcIndexer.Delete(obj)
	}
	for i := range pvcs.Items {
		_ = pvcIndexer.Add(&pvcs.Items[i])
	}
	pvs, _ := h.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	for _, obj := range pvIndexer.List() {
		_ = pvIndexer.Delete(obj)
	}
	for i := range pvs.Items {
		_ = pvIndexer.Add(&pvs.Items[i])
	}
	classes, _ := h.client.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	for i := range classes.Items {
		_ = classIndexer.Add(&classes.Items[i])
	}
}

func claim(name, node string) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: "uid-www"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To(ClassName),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	if node != "" {
		pvc.Annotations = map[string]string{annSelectedNode: node}
	}
	return pvc
}

func TestProvision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pvc    *corev1.PersistentVolumeClaim
		wantPV bool
	}{
		{"claim placed on this node", claim("www-web-0", "node-a"), true},
		{"claim not placed yet (WaitForFirstConsumer)", claim("www-web-0", ""), false},
		{"claim placed on another node", claim("www-web-0", "node-b"), false},
		{"claim of another class", func() *corev1.PersistentVolumeClaim {
			c := claim("www-web-0", "node-a")
			c.Spec.StorageClassName = ptr.To("other")
			return c
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.pvc)
			h.sync("pvc/default/www-web-0")
			h.sync("pvc/default/www-web-0") // idempotent
			pvs, _ := h.client.CoreV1().PersistentVolumes().List(context.Background(), metav1.ListOptions{})
			if got := len(pvs.Items) == 1; got != tc.wantPV {
				t.Fatalf("PVs %d, want provisioned = %v", len(pvs.Items), tc.wantPV)
			}
			if !tc.wantPV {
				return
			}
			pv := pvs.Items[0]
			dir := filepath.Join(h.root, "pvc-uid-www")
			if pv.Spec.Local == nil || pv.Spec.Local.Path != dir {
				t.Errorf("PV source %+v, want local path %s", pv.Spec.PersistentVolumeSource, dir)
			}
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
				t.Errorf("volume directory %s: %v %v, want a 0777 directory", dir, fi, err)
			}
			if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != "www-web-0" || ref.UID != "uid-www" {
				t.Errorf("claimRef %+v", ref)
			}
			terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
			if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != "node-a" {
				t.Errorf("node affinity %+v, want pinned to node-a", terms)
			}
			if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "1Gi" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
				t.Errorf("capacity %s reclaim %s", q.String(), pv.Spec.PersistentVolumeReclaimPolicy)
			}
		})
	}
}

func TestReclaim(t *testing.T) {
	for _, policy := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain} {
		t.Run(string(policy), func(t *testing.T) {
			h := newHarness(t, claim("www-web-0", "node-a"))
			h.sync("pvc/default/www-web-0")
			ctx := context.Background()
			pv, err := h.client.CoreV1().PersistentVolumes().Get(ctx, "pvc-uid-www", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(pv.Spec.Local.Path, "data")
			if err := os.WriteFile(data, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			pv.Spec.PersistentVolumeReclaimPolicy = policy
			pv.Status.Phase = corev1.VolumeReleased
			if _, err := h.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			h.sync("pv/pvc-uid-www")
			_, getErr := h.client.CoreV1().PersistentVolumes().Get(ctx, "pvc-uid-www", metav1.GetOptions{})
			_, statErr := os.Stat(data)
			deleted := getErr != nil && os.IsNotExist(statErr)
			kept := getErr == nil && statErr == nil
			if policy == corev1.PersistentVolumeReclaimDelete && !deleted || policy == corev1.PersistentVolumeReclaimRetain && !kept {
				t.Fatalf("%s: PV err %v, data err %v", policy, getErr, statErr)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	h := newHarness(t, claim("www-web-0", "node-a"))
	h.sync("pvc/default/www-web-0")
	ctx := context.Background()
	pvc, _ := h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
	// What the binder does, then the user asks for more.
	pvc.Spec.VolumeName = "pvc-uid-www"
	pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if _, err := h.client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.sync("pvc/default/www-web-0")
	pv, _ := h.client.CoreV1().PersistentVolumes().Get(ctx, "pvc-uid-www", metav1.GetOptions{})
	pvc, _ = h.client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "www-web-0", metav1.GetOptions{})
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "2Gi" {
		t.Errorf("PV capacity %s after resize, want 2Gi", q.String())
	}
	if q := pvc.Status.Capacity[corev1.ResourceStorage]; q.String() != "2Gi" {
		t.Errorf("claim status capacity %s after resize, want 2Gi", q.String())
	}
}
