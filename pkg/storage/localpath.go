// Package storage is the default StorageClass, local-path: a filesystem of
// the requested size per claim (volume.go) on the node the scheduler chose
// for the claim's first pod (WaitForFirstConsumer), bound through a
// PersistentVolume pinned to that node, so that a StatefulSet's replacement
// pod lands where its data is.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// ClassName and Provisioner name the default StorageClass.
	ClassName   = "local-path"
	Provisioner = "stead.dev/local-path"

	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// annImage on a PV names the image file its filesystem lives in. PVs
	// without it are plain directories, as stead made them before volumes
	// had a size of their own; they stay that way.
	annImage = "stead.dev/local-path-image"
)

// EnsureClass creates the default StorageClass if it does not exist. A class
// the administrator changed is left as it is.
func EnsureClass(ctx context.Context, client kubernetes.Interface) error {
	class := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:          Provisioner,
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
	_, err := client.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("storage class %s: %w", ClassName, err)
	}
	return nil
}

// LocalPath provisions, expands and reclaims local-path volumes of one node.
type LocalPath struct {
	node    string
	root    string
	client  kubernetes.Interface
	pvcs    corelisters.PersistentVolumeClaimLister
	pvs     corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	synced  []cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]

	// mu serializes work on images and mounts: a claim's key and its
	// volume's key may be synced at once, and must not both mount it.
	mu sync.Mutex
}

// NewLocalPath keeps volumes for node under root: their images in
// root/images, their filesystems mounted at root/<volume>. It mounts every
// image that is not mounted (after a reboot, say) before it returns, so that
// pods started after it find their data rather than an empty directory.
func NewLocalPath(node, root string, client kubernetes.Interface, factory informers.SharedInformerFactory) *LocalPath {
	pvcInformer := factory.Core().V1().PersistentVolumeClaims()
	pvInformer := factory.Core().V1().PersistentVolumes()
	classInformer := factory.Storage().V1().StorageClasses()
	l := &LocalPath{
		node: node, root: root, client: client,
		pvcs: pvcInformer.Lister(), pvs: pvInformer.Lister(), classes: classInformer.Lister(),
		synced: []cache.InformerSynced{pvcInformer.Informer().HasSynced, pvInformer.Informer().HasSynced, classInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "local-path"}),
	}
	// Claims are keyed "pvc/<ns>/<name>", volumes "pv/<name>".
	handler := func(prefix string) cache.ResourceEventHandler {
		add := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				l.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }, DeleteFunc: add}
	}
	_, _ = pvcInformer.Informer().AddEventHandler(handler("pvc/"))
	_, _ = pvInformer.Informer().AddEventHandler(handler("pv/"))
	l.mountAll()
	return l
}

// mountAll mounts every image under root. Images are what is mounted, not
// PVs, as the API may not answer yet; an image whose PV an administrator
// deleted (Retain) is mounted too, so its data stays where it was.
func (l *LocalPath) mountAll() {
	images, err := filepath.Glob(filepath.Join(l.root, "images", "*.img*"))
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, image := range images {
		name, ok := strings.CutSuffix(filepath.Base(image), ".img")
		if !ok {
			// A format cut short; it never held data and provisioning starts over.
			if filepath.Ext(image) == ".tmp" {
				_ = os.Remove(image)
			}
			continue
		}
		if _, err := mountImage(image, l.volumeDir(name)); err != nil {
			utilruntime.HandleError(fmt.Errorf("local-path volume %s: %w", name, err))
		}
	}
}

// Run works until ctx ends.
func (l *LocalPath) Run(ctx context.Context, workers int) {
	defer l.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), l.synced...) {
		return
	}
	for range workers {
		go wait.UntilWithContext(ctx, l.worker, time.Second)
	}
	<-ctx.Done()
}

func (l *LocalPath) worker(ctx context.Context) {
	for {
		key, quit := l.queue.Get()
		if quit {
			return
		}
		if err := l.sync(ctx, key); err != nil {
			if errors.Is(err, errInUse) {
				// Expected, said on the claim: not an error to log each retry.
				klog.V(2).InfoS("local-path: waiting for the volume's pods to go", "key", key, "err", err)
			} else {
				utilruntime.HandleErrorWithContext(ctx, err, "local-path", "key", key)
			}
			l.queue.AddRateLimited(key)
		} else {
			l.queue.Forget(key)
		}
		l.queue.Done(key)
	}
}

func (l *LocalPath) sync(ctx context.Context, key string) error {
	kind, rest, _ := cut(key)
	switch kind {
	case "pvc":
		ns, name, err := cache.SplitMetaNamespaceKey(rest)
		if err != nil {
			return err
		}
		pvc, err := l.pvcs.PersistentVolumeClaims(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := l.provision(ctx, pvc); err != nil {
			return err
		}
		return l.expand(ctx, pvc)
	case "pv":
		pv, err := l.pvs.Get(rest)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if l.reclaimable(pv) {
			return l.reclaim(ctx, pv)
		}
		return l.remount(pv)
	}
	return fmt.Errorf("unknown key %q", key)
}

func cut(key string) (kind, rest string, ok bool) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// ours is the claim's class when it is a local-path class.
func (l *LocalPath) ours(pvc *corev1.PersistentVolumeClaim) *storagev1.StorageClass {
	if pvc.Spec.StorageClassName == nil {
		return nil
	}
	class, err := l.classes.Get(*pvc.Spec.StorageClassName)
	if err != nil || class.Provisioner != Provisioner {
		return nil
	}
	return class
}

func volumeName(pvc *corev1.PersistentVolumeClaim) string { return "pvc-" + string(pvc.UID) }

// provision makes the volume and the PersistentVolume for a claim whose
// first pod the scheduler placed on this node. The volume is mounted before
// the PV exists, so a PV of ours always has its image; a crash in between
// leaves an image the next sync mounts and uses rather than formats.
func (l *LocalPath) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	class := l.ours(pvc)
	if class == nil || pvc.Spec.VolumeName != "" || pvc.Status.Phase != corev1.ClaimPending ||
		pvc.Annotations[annSelectedNode] != l.node || pvc.DeletionTimestamp != nil {
		return nil
	}
	name := volumeName(pvc)
	if _, err := l.pvs.Get(name); err == nil {
		return nil // made already; the binder does the rest
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return fmt.Errorf("claim %s/%s: local-path serves filesystem volumes, not volumeMode Block", pvc.Namespace, pvc.Name)
	}
	dir, image := l.volumeDir(name), l.imagePath(name)
	if err := l.makeVolume(image, dir, imageSize(pvc.Spec.Resources.Requests[corev1.ResourceStorage])); err != nil {
		return fmt.Errorf("volume %s for claim %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: Provisioner, annImage: image},
			Labels:      map[string]string{corev1.LabelHostname: l.node},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: ptr.Deref(class.ReclaimPolicy, corev1.PersistentVolumeReclaimDelete),
			StorageClassName:              class.Name,
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion,
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{l.node}}},
			}}}},
		},
	}
	if _, err := l.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("volume %s for claim %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	return nil
}

func (l *LocalPath) makeVolume(image, dir string, size int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := createImage(image, size); err != nil {
		return err
	}
	if _, err := mountImage(image, dir); err != nil {
		return err
	}
	// A new volume is empty, as a directory would be: programs that want to
	// initialize an empty data directory (initdb, mysqld) refuse one that
	// holds lost+found. e2fsck makes it again when it needs it. Remove only
	// takes it when it is empty.
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	// Any user a pod runs as may write its own volume.
	return os.Chmod(dir, 0o777)
}

// image is the image of one of our volumes, "" for a directory volume.
func (l *LocalPath) image(pv *corev1.PersistentVolume) (string, error) {
	image, ok := pv.Annotations[annImage]
	if !ok {
		return "", nil
	}
	// The annotation only marks the volume: paths come from root, never
	// from an object someone may have edited.
	if want := l.imagePath(pv.Name); image != want {
		return "", fmt.Errorf("volume %s: image %q, want %q", pv.Name, image, want)
	}
	if pv.Spec.Local == nil || pv.Spec.Local.Path != l.volumeDir(pv.Name) {
		return "", fmt.Errorf("volume %s: path %v is not %s", pv.Name, pv.Spec.Local, l.volumeDir(pv.Name))
	}
	return image, nil
}

// remount mounts a volume of ours that is not mounted, as after someone
// unmounted it; NewLocalPath has done so for all of them at start.
func (l *LocalPath) remount(pv *corev1.PersistentVolume) error {
	if pv.Annotations[annProvisionedBy] != Provisioner || !l.onThisNode(pv) || pv.DeletionTimestamp != nil {
		return nil
	}
	image, err := l.image(pv)
	if err != nil || image == "" {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = mountImage(image, l.volumeDir(pv.Name))
	return err
}

// expand grows a bound volume to what its claim now requests, online: the
// image, its filesystem, then the PV's capacity and the claim's status, so
// the objects never say more than the filesystem holds. A directory volume
// has no size of its own; for it this is bookkeeping only.
func (l *LocalPath) expand(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if l.ours(pvc) == nil || pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
		return nil
	}
	pv, err := l.pvs.Get(pvc.Spec.VolumeName)
	if err != nil || pv.Annotations[annProvisionedBy] != Provisioner || !l.onThisNode(pv) {
		return nil
	}
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) > 0 {
		if err := l.grow(pv, want); errors.Is(err, errInUse) {
			// Said on the claim as upstream says it of volumes that grow
			// offline, and retried: at the latest when the claim changes
			// as its last pod goes (its Unused condition).
			return errors.Join(err, l.resizePending(ctx, pvc, err))
		} else if err != nil {
			return err
		}
		pv = pv.DeepCopy()
		pv.Spec.Capacity[corev1.ResourceStorage] = want
		if _, err := l.client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return err
		}
		have = want
	}
	current := pvc.Status.Capacity[corev1.ResourceStorage]
	if have.Cmp(current) <= 0 {
		return nil
	}
	pvc = pvc.DeepCopy()
	if pvc.Status.Capacity == nil {
		pvc.Status.Capacity = corev1.ResourceList{}
	}
	pvc.Status.Capacity[corev1.ResourceStorage] = have
	pvc.Status.AllocatedResourceStatuses = nil
	pvc.Status.Conditions = nil
	_, err = l.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	return err
}

// PrepareMount finishes a pending expansion of the claim's volume just
// before a pod mounts it, as the kubelet finishes a FileSystemResizePending
// when a pod starts: a volume that grows only unmounted grows in the gap
// between its last pod and its next, which is too short to leave to a
// retry. A volume still in use (by another pod) is mounted as it is.
func (l *LocalPath) PrepareMount(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if err := l.expand(ctx, pvc); err != nil && !errors.Is(err, errInUse) {
		return err
	}
	return nil
}

// resizePending sets the claim's FileSystemResizePending condition, once.
func (l *LocalPath) resizePending(ctx context.Context, pvc *corev1.PersistentVolumeClaim, why error) error {
	for _, c := range pvc.Status.Conditions {
		if c.Type == corev1.PersistentVolumeClaimFileSystemResizePending && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	pvc = pvc.DeepCopy()
	pvc.Status.Conditions = append(pvc.Status.Conditions, corev1.PersistentVolumeClaimCondition{
		Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionTrue,
		Reason: "VolumeInUse", LastTransitionTime: metav1.Now(),
		Message: "Waiting for the claim's pods to be gone to finish the file system resize: " + why.Error(),
	})
	_, err := l.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	return err
}

func (l *LocalPath) grow(pv *corev1.PersistentVolume, want resource.Quantity) error {
	image, err := l.image(pv)
	if err != nil || image == "" {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	loop, err := mountImage(image, l.volumeDir(pv.Name))
	if err != nil {
		return err
	}
	if err := growImage(image, l.volumeDir(pv.Name), loop, imageSize(want)); err != nil {
		return fmt.Errorf("volume %s: %w", pv.Name, err)
	}
	return nil
}

func (l *LocalPath) onThisNode(pv *corev1.PersistentVolume) bool {
	return pv.Labels[corev1.LabelHostname] == l.node
}

// reclaimable is a released volume of ours whose policy says Delete; Retain
// keeps the data, image and mount, for the administrator.
func (l *LocalPath) reclaimable(pv *corev1.PersistentVolume) bool {
	return pv.Annotations[annProvisionedBy] == Provisioner && l.onThisNode(pv) &&
		pv.Status.Phase == corev1.VolumeReleased && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete
}

// reclaim deletes a released volume's data, then its object. Unmounting
// comes first, and the image goes before the directory, so that a crash
// between steps leaves a volume the next sync deletes the rest of.
func (l *LocalPath) reclaim(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.Local == nil || filepath.Dir(pv.Spec.Local.Path) != filepath.Clean(l.root) {
		return fmt.Errorf("volume %s: path %v is not under %s; not deleting it", pv.Name, pv.Spec.Local, l.root)
	}
	image, err := l.image(pv)
	if err != nil {
		return err
	}
	if err := l.deleteVolume(image, pv.Spec.Local.Path); err != nil {
		return fmt.Errorf("volume %s: %w", pv.Name, err)
	}
	err = l.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (l *LocalPath) deleteVolume(image, dir string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if image != "" {
		if err := unmount(dir); err != nil {
			return err
		}
		if err := os.Remove(image); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// RemoveAll would delete whatever is mounted there as well.
	_, mounted, err := mountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("%s is a mount point; not deleting it", dir)
	}
	return os.RemoveAll(dir)
}
