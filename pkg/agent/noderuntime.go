package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	volumeutil "k8s.io/kubernetes/pkg/volume/util"

	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/image"
	"github.com/steadhq/stead/pkg/network"
	"github.com/steadhq/stead/pkg/runtime"
)

// NodeRuntime runs pods on this machine: images from the node's store,
// sandboxes on the node's bridge, containers with libcontainer.
type NodeRuntime struct {
	Images        *image.Store
	Network       *network.Network
	Containers    *runtime.Runtime
	Client        kubernetes.Interface
	NodeIP        string // the address of hostNetwork pods
	PodsDir       string // <data-dir>/pods
	ClusterDNS    string
	ClusterDomain string
	Allocatable   corev1.ResourceList
	// PrepareMount, if set, readies a claim's volume just before a
	// container mounts it (a pending expansion: pkg/storage).
	PrepareMount func(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error

	mu        sync.Mutex
	byID      map[string]*runtime.Container
	images    map[string]string // container id → image ID
	refreshed map[types.UID]time.Time
	tokens    map[tokenKey]podToken
}

// tokenKey names one service account token projection of one pod.
type tokenKey struct {
	pod  types.UID
	path string // the projected file: a pod may project several tokens
}

// podToken is a token written to a pod's volume, kept so that refreshing
// the volume's other files does not ask for a new token each time.
type podToken struct {
	token    string
	renewAt  time.Time
	audience string
}

// tokenRenewal is when the kubelet's token manager replaces a token: past
// 80% of its lifetime, or once it is a day old.
func tokenRenewal(issued, expires time.Time) time.Time {
	return issued.Add(min(expires.Sub(issued)*8/10, 24*time.Hour))
}

func (n *NodeRuntime) podDir(pod *corev1.Pod) string {
	return filepath.Join(n.PodsDir, string(pod.UID))
}

// EnsureSandbox is part of ContainerRuntime.
func (n *NodeRuntime) EnsureSandbox(_ context.Context, pod *corev1.Pod) (string, error) {
	sandbox, err := n.Containers.EnsureSandbox(string(pod.UID), sandboxOptions(pod))
	if err != nil {
		return "", err
	}
	if pod.Spec.HostNetwork {
		// The node's own address, as the kubelet reports it.
		return n.NodeIP, nil
	}
	ip, err := n.Network.Attach(string(pod.UID), sandbox.NetNSPath())
	if err != nil {
		return "", err
	}
	return ip.String(), nil
}

// RemoveSandbox is part of ContainerRuntime.
func (n *NodeRuntime) RemoveSandbox(_ context.Context, pod *corev1.Pod) error {
	n.mu.Lock()
	delete(n.refreshed, pod.UID)
	for k := range n.tokens {
		if k.pod == pod.UID {
			delete(n.tokens, k)
		}
	}
	n.mu.Unlock()
	if err := n.Network.Detach(string(pod.UID)); err != nil {
		return err
	}
	if err := n.Containers.RemoveSandbox(string(pod.UID)); err != nil {
		return err
	}
	// Memory-backed emptyDirs are mounts: RemoveAll would empty them and
	// then fail on the mount point, leaving the tmpfs behind.
	if err := fsutil.UnmountBelow(n.podDir(pod)); err != nil {
		return err
	}
	return os.RemoveAll(n.podDir(pod))
}

func pullPolicy(p corev1.PullPolicy) image.PullPolicy {
	switch p {
	case corev1.PullAlways:
		return image.PullAlways
	case corev1.PullNever:
		return image.PullNever
	case corev1.PullIfNotPresent:
		return image.PullIfNotPresent
	}
	return ""
}

// StartContainer is part of ContainerRuntime.
func (n *NodeRuntime) StartContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img image.Image, podIP string, restartCount int32) (string, error) {
	rootfs, err := n.Images.Unpack(ctx, img.Ref)
	if err != nil {
		return "", &ImageError{Reason: "ErrImagePull", Message: err.Error()}
	}
	imgConfig := ImageConfig{Entrypoint: rootfs.Config.Entrypoint, Cmd: rootfs.Config.Cmd, Env: rootfs.Config.Env, WorkingDir: rootfs.Config.WorkingDir}

	withIP := pod.DeepCopy()
	withIP.Status.PodIP = podIP
	withIP.Status.PodIPs = []corev1.PodIP{{IP: podIP}}
	envLines, env, err := containerEnv(ctx, envInputs{
		source: ClientEnvSource{Client: n.Client}, image: imgConfig,
		services: n.serviceEnv(ctx, pod.Namespace), allocatable: n.Allocatable,
	}, withIP, c)
	if err != nil {
		return "", err
	}
	args := processArgs(c, imgConfig, env)
	if len(args) == 0 {
		return "", fmt.Errorf("container %s: no command: the image has none and the pod gives none", c.Name)
	}

	dir := n.podDir(pod)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	hosts, resolv := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	hostNS, hostSearch := hostResolvers()
	hostsContent, err := n.podHostsFile(pod, podIP)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(hosts, []byte(hostsContent), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(resolv, []byte(resolvConf(pod, n.ClusterDNS, n.ClusterDomain, hostNS, hostSearch)), 0o644); err != nil {
		return "", err
	}
	mounts, err := n.volumeMounts(ctx, pod, c)
	if err != nil {
		return "", err
	}

	uid, gid := imageUser(rootfs.Config.User)
	sc := effectiveSecurity(pod, c)
	if sc.RunAsUser != nil {
		uid = uint32(*sc.RunAsUser)
	}
	if sc.RunAsGroup != nil {
		gid = uint32(*sc.RunAsGroup)
	}
	workDir := c.WorkingDir
	if workDir == "" {
		workDir = imgConfig.WorkingDir
	}
	if _, err := n.Containers.EnsureSandbox(string(pod.UID), sandboxOptions(pod)); err != nil {
		return "", err
	}
	pidNamespace, err := n.pidNamespace(pod, c.Name)
	if err != nil {
		return "", err
	}
	spec := runtime.ContainerSpec{
		ID:           containerRuntimeID(pod.UID, c.Name, restartCount),
		PodUID:       string(pod.UID),
		PIDNamespace: pidNamespace,
		LowerDirs:    rootfs.LowerDirs, Args: args, Env: envLines, WorkingDir: workDir,
		UID: uid, GID: gid, Mounts: mounts,
		HostsFile: hosts, ResolvConf: resolv,
		TerminationMessagePath: c.TerminationMessagePath,
		LogPath:                filepath.Join(dir, "logs", c.Name, strconv.Itoa(int(restartCount))+".log"),
		Stdin:                  c.Stdin, StdinOnce: c.StdinOnce, TTY: c.TTY,
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		for _, g := range psc.SupplementalGroups {
			spec.SupplementalGroups = append(spec.SupplementalGroups, uint32(g))
		}
		// As the kubelet: the process is in the fsGroup too, which owns
		// the pod's writable volumes.
		if psc.FSGroup != nil {
			spec.SupplementalGroups = append(spec.SupplementalGroups, uint32(*psc.FSGroup))
		}
	}
	if sc.Privileged != nil {
		spec.Privileged = *sc.Privileged
	}
	if sc.ReadOnlyRootFilesystem != nil {
		spec.ReadOnlyRootFS = *sc.ReadOnlyRootFilesystem
	}
	if caps := sc.Capabilities; caps != nil {
		for _, a := range caps.Add {
			spec.CapAdd = append(spec.CapAdd, string(a))
		}
		for _, d := range caps.Drop {
			spec.CapDrop = append(spec.CapDrop, string(d))
		}
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		spec.MemoryLimit = mem.Value()
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		spec.CPUPeriod = 100000
		spec.CPUQuota = max(cpu.MilliValue()*100000/1000, 1000)
	}
	if cpu, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		spec.CPUShares = uint64(max(cpu.MilliValue()*1024/1000, 2))
	}
	ctr, err := n.Containers.Start(ctx, spec)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	n.initMaps()
	// As containerd's CRI reports it: a pulled image by the digest of the
	// manifest its registry served, an imported one by its config's.
	imageID := rootfs.ID
	if img.RepoDigest != "" {
		imageID = img.RepoDigest
	}
	n.byID[spec.ID], n.images[spec.ID] = ctr, imageID
	n.mu.Unlock()
	return spec.ID, nil
}

// sandboxOptions is what the pod's sandbox shares with the node: what the
// pod's spec asks for (hostNetwork, hostIPC), and nothing otherwise.
func sandboxOptions(pod *corev1.Pod) runtime.SandboxOptions {
	return runtime.SandboxOptions{Hostname: podHostname(pod), HostNetwork: pod.Spec.HostNetwork, HostIPC: pod.Spec.HostIPC}
}

// podHostsFile is the pod's /etc/hosts: the kubelet's for the pod, or
// the node's own for a pod on the node's network.
func (n *NodeRuntime) podHostsFile(pod *corev1.Pod, podIP string) (string, error) {
	if !pod.Spec.HostNetwork {
		return hostsFile(pod, podIP, n.ClusterDomain), nil
	}
	nodeHosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return "", err
	}
	return nodeHostsFile(nodeHosts, pod), nil
}

// pidNamespace is the PID namespace that the pod's container named name
// joins: the node's for a hostPID pod; for an ephemeral container with a
// target (`kubectl debug --target`), the target's, so that it sees the
// target's processes, as the kubelet's runtime arranges it. Empty for any
// other container, which has a namespace of its own.
func (n *NodeRuntime) pidNamespace(pod *corev1.Pod, name string) (string, error) {
	if pod.Spec.HostPID {
		return fmt.Sprintf("/proc/%d/ns/pid", os.Getpid()), nil
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		if ec.Name != name || ec.TargetContainerName == "" {
			continue
		}
		for _, cs := range pod.Status.ContainerStatuses {
			id, ok := strings.CutPrefix(cs.ContainerID, "stead://")
			if cs.Name != ec.TargetContainerName || !ok || cs.State.Running == nil {
				continue
			}
			target, err := n.container(id)
			if err != nil {
				return "", err
			}
			if pid := target.Pid(); pid > 0 {
				return fmt.Sprintf("/proc/%d/ns/pid", pid), nil
			}
		}
		return "", fmt.Errorf("target container %q is not running", ec.TargetContainerName)
	}
	return "", nil
}

func (n *NodeRuntime) initMaps() {
	if n.byID == nil {
		n.byID, n.images, n.refreshed = map[string]*runtime.Container{}, map[string]string{}, map[types.UID]time.Time{}
		n.tokens = map[tokenKey]podToken{}
	}
}

// containerRuntimeID names one run of a container: pod, name and attempt.
func containerRuntimeID(uid types.UID, name string, attempt int32) string {
	return fmt.Sprintf("%s_%s_%d", uid, name, attempt)
}

func effectiveSecurity(pod *corev1.Pod, c *corev1.Container) corev1.SecurityContext {
	var sc corev1.SecurityContext
	if p := pod.Spec.SecurityContext; p != nil {
		sc.RunAsUser, sc.RunAsGroup = p.RunAsUser, p.RunAsGroup
	}
	if c.SecurityContext != nil {
		cs := c.SecurityContext
		if cs.RunAsUser != nil {
			sc.RunAsUser = cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			sc.RunAsGroup = cs.RunAsGroup
		}
		sc.Privileged, sc.ReadOnlyRootFilesystem, sc.Capabilities = cs.Privileged, cs.ReadOnlyRootFilesystem, cs.Capabilities
	}
	return sc
}

// imageUser reads a numeric "uid[:gid]" from the image; names would need
// the image's /etc/passwd and are left to the pod's runAsUser for now.
func imageUser(user string) (uint32, uint32) {
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0
	}
	gid, err := strconv.ParseUint(g, 10, 32)
	if err != nil {
		gid = uid
	}
	return uint32(uid), uint32(gid)
}

// hostResolvers are the node's own, for dnsPolicy Default.
func hostResolvers() (servers, searches []string) {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil, nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			servers = append(servers, f[1])
		}
		if len(f) >= 2 && f[0] == "search" {
			searches = f[1:]
		}
	}
	return servers, searches
}

// serviceEnv is the KUBERNETES_SERVICE_* variables every pod gets, so
// in-cluster clients find the API server.
func (n *NodeRuntime) serviceEnv(ctx context.Context, _ string) map[string]string {
	svc, err := n.Client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || len(svc.Spec.Ports) == 0 {
		return nil
	}
	port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
	return map[string]string{
		"KUBERNETES_SERVICE_HOST": svc.Spec.ClusterIP, "KUBERNETES_SERVICE_PORT": port,
		"KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": "tcp://" + svc.Spec.ClusterIP + ":" + port,
	}
}

// volumeMounts resolves the container's volume mounts to host paths.
func (n *NodeRuntime) volumeMounts(ctx context.Context, pod *corev1.Pod, c *corev1.Container) ([]runtime.Mount, error) {
	var mounts []runtime.Mount
	for _, vm := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == vm.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volumeMount %s: no volume of that name", vm.Name)
		}
		source, err := n.volumePath(ctx, pod, vol)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		if vm.SubPath != "" {
			if source, err = subPathSource(source, vm.SubPath); err != nil {
				return nil, fmt.Errorf("volumeMount %s subPath %q: %w", vm.Name, vm.SubPath, err)
			}
		}
		mounts = append(mounts, runtime.Mount{Source: source, Destination: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return mounts, nil
}

// subPathSource is what a subPath mount binds: the path inside the volume,
// made a directory if it does not exist, and with its links resolved (a
// configMap's files are links into its current version) but never to
// anywhere outside the volume.
func subPathSource(volume, subPath string) (string, error) {
	source := filepath.Join(volume, filepath.Clean("/"+subPath))
	if _, err := os.Lstat(source); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(source, 0o777); err != nil {
			return "", err
		}
	}
	resolved, err := filepath.EvalSymlinks(source)
	if err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(volume)
	if err != nil {
		return "", err
	}
	if resolved != root && !strings.HasPrefix(resolved, root+string(filepath.Separator)) {
		return "", errors.New("leads outside the volume")
	}
	return resolved, nil
}

func (n *NodeRuntime) volumePath(ctx context.Context, pod *corev1.Pod, vol *corev1.Volume) (string, error) {
	dir := filepath.Join(n.podDir(pod), "volumes", vol.Name)
	switch {
	case vol.PersistentVolumeClaim != nil:
		pvc, err := n.Client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, vol.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if pvc.Spec.VolumeName == "" {
			return "", fmt.Errorf("claim %s is not bound yet", pvc.Name)
		}
		if n.PrepareMount != nil {
			if err := n.PrepareMount(ctx, pvc); err != nil {
				// The data comes first: mount it as it is.
				klog.ErrorS(err, "prepare a claim's volume before mounting it", "pod", klog.KObj(pod), "claim", pvc.Name)
			}
		}
		pv, err := n.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		switch {
		case pv.Spec.Local != nil:
			return pv.Spec.Local.Path, setVolumeOwnership(pv.Spec.Local.Path, pod.Spec.SecurityContext)
		case pv.Spec.HostPath != nil:
			return pv.Spec.HostPath.Path, nil
		}
		return "", fmt.Errorf("volume %s is neither local nor hostPath", pv.Name)
	case vol.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		if err := os.Chmod(dir, 0o777); err != nil { // not subject to the umask
			return "", err
		}
		if vol.EmptyDir.Medium == corev1.StorageMediumMemory {
			if err := mountTmpfs(dir, vol.EmptyDir.SizeLimit); err != nil {
				return "", err
			}
		}
		return dir, setVolumeOwnership(dir, pod.Spec.SecurityContext)
	case vol.HostPath != nil:
		return vol.HostPath.Path, nil
	case vol.ConfigMap != nil:
		cm, err := n.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, vol.ConfigMap.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(vol.ConfigMap.Optional) {
			return dir, os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return "", err
		}
		files := map[string][]byte{}
		for k, v := range cm.Data {
			files[k] = []byte(v)
		}
		return dir, writeProjected(dir, files, vol.ConfigMap.Items)
	case vol.Secret != nil:
		secret, err := n.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(vol.Secret.Optional) {
			return dir, os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return "", err
		}
		return dir, writeProjected(dir, secret.Data, vol.Secret.Items)
	case vol.DownwardAPI != nil:
		files, err := n.projected(ctx, pod, &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			DownwardAPI: &corev1.DownwardAPIProjection{Items: vol.DownwardAPI.Items},
		}}})
		if err != nil {
			return "", err
		}
		return dir, writeProjected(dir, files, nil)
	case vol.Projected != nil:
		files, err := n.projected(ctx, pod, vol.Projected)
		if err != nil {
			return "", err
		}
		return dir, writeProjected(dir, files, nil)
	}
	return "", errors.New("this volume type is not supported yet (persistentVolumeClaim, emptyDir, hostPath, configMap, secret, downwardAPI and projected are)")
}

// projected gathers a projected volume's files: the service account token
// every pod gets (kube-api-access-*), the cluster CA, downward API fields.
// A token is asked for once and again when due (tokenRenewal), as the
// kubelet does.
func (n *NodeRuntime) projected(ctx context.Context, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, src := range p.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			token, err := n.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			files[src.ServiceAccountToken.Path] = []byte(token)
		case src.ConfigMap != nil:
			cm, err := n.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ptrTrue(src.ConfigMap.Optional) {
					continue
				}
				return nil, err
			}
			for _, it := range itemsOrAll(src.ConfigMap.Items, cm.Data) {
				files[it.Path] = []byte(cm.Data[it.Key])
			}
		case src.Secret != nil:
			secret, err := n.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && ptrTrue(src.Secret.Optional) {
					continue
				}
				return nil, err
			}
			for _, it := range itemsOrAll(src.Secret.Items, secret.Data) {
				files[it.Path] = secret.Data[it.Key]
			}
		case src.DownwardAPI != nil:
			for _, it := range src.DownwardAPI.Items {
				if it.FieldRef == nil {
					return nil, fmt.Errorf("downwardAPI %s: only fieldRef is supported yet", it.Path)
				}
				v, err := fieldValue(pod, it.FieldRef.FieldPath)
				if err != nil {
					return nil, err
				}
				files[it.Path] = []byte(v)
			}
		}
	}
	return files, nil
}

// mountTmpfs mounts a memory-backed emptyDir, sized by its sizeLimit (the
// kernel's default, half the memory, when it has none). Mounting an
// already mounted one again is a no-op, so a container restart does not
// hide the data under a second tmpfs.
func mountTmpfs(dir string, sizeLimit *resource.Quantity) error {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return err
	}
	if st.Dev != parent.Dev {
		return nil // a mount point already
	}
	opts := "mode=0777"
	if sizeLimit != nil && !sizeLimit.IsZero() {
		opts += ",size=" + strconv.FormatInt(sizeLimit.Value(), 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// setVolumeOwnership gives a writable volume to the pod's fsGroup as the
// kubelet does: group-owned by it, group read-write, directories setgid so
// that new files inherit the group. With fsGroupChangePolicy OnRootMismatch
// a volume whose root already has the group and mode is left alone, which
// keeps a large volume's restart fast.
func setVolumeOwnership(dir string, psc *corev1.PodSecurityContext) error {
	if psc == nil || psc.FSGroup == nil {
		return nil
	}
	gid := int(*psc.FSGroup)
	if psc.FSGroupChangePolicy != nil && *psc.FSGroupChangePolicy == corev1.FSGroupChangeOnRootMismatch {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err == nil && int(st.Gid) == gid && st.Mode&(unix.S_ISGID|0o070) == unix.S_ISGID|0o070 {
			return nil
		}
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode() | 0o060
		if d.IsDir() {
			mode |= 0o010 | fs.ModeSetgid
		}
		return os.Chmod(path, mode)
	})
}

func itemsOrAll[V any](items []corev1.KeyToPath, data map[string]V) []corev1.KeyToPath {
	if len(items) > 0 {
		return items
	}
	all := make([]corev1.KeyToPath, 0, len(data))
	for k := range data {
		all = append(all, corev1.KeyToPath{Key: k, Path: k})
	}
	return all
}

// writeProjected makes dir hold exactly these files, changed all at once
// as the kubelet changes them (its atomic writer: the files are links into
// a timestamped directory that one rename replaces), so that a reader never
// sees half of an update. Writing what is already there changes nothing.
func writeProjected(dir string, data map[string][]byte, items []corev1.KeyToPath) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	payload := map[string]volumeutil.FileProjection{}
	if len(items) == 0 {
		for k, v := range data {
			payload[k] = volumeutil.FileProjection{Data: v, Mode: 0o644}
		}
	}
	for _, it := range items {
		mode := int32(0o644)
		if it.Mode != nil {
			mode = *it.Mode
		}
		payload[strings.TrimPrefix(filepath.Clean("/"+it.Path), "/")] = volumeutil.FileProjection{Data: data[it.Key], Mode: mode}
	}
	w, err := volumeutil.NewAtomicWriter(dir, "stead")
	if err != nil {
		return err
	}
	return w.Write(payload, nil)
}

// refreshInterval is how often a running pod's configMap, secret and
// downward API volumes are brought up to date.
const refreshInterval = 10 * time.Second

// RefreshVolumes rewrites the pod's configMap, secret, downwardAPI and
// projected volumes from what the API holds now, at most once every
// refreshInterval (a projected volume with a token, when the token is due):
// a ConfigMap's change reaches the running containers without a restart,
// and a service account token is replaced before it expires, as with the
// kubelet. Volumes mounted with subPath keep the
// version they started with, as upstream.
func (n *NodeRuntime) RefreshVolumes(ctx context.Context, pod *corev1.Pod) error {
	n.mu.Lock()
	n.initMaps()
	if time.Since(n.refreshed[pod.UID]) < refreshInterval {
		n.mu.Unlock()
		return nil
	}
	n.refreshed[pod.UID] = time.Now()
	n.mu.Unlock()
	var errs []error
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		switch {
		case vol.ConfigMap != nil, vol.Secret != nil, vol.DownwardAPI != nil:
		case vol.Projected != nil && n.tokenDue(pod, vol.Projected):
		case vol.Projected != nil && !hasToken(vol.Projected):
		default:
			// Every pod's kube-api-access volume has a token: it is
			// rewritten with its token, not every refreshInterval,
			// which would cost the API server a read per pod and
			// interval for a CA that seldom changes.
			continue
		}
		if _, err := os.Stat(filepath.Join(n.podDir(pod), "volumes", vol.Name)); err != nil {
			continue // not set up: its first container has not started
		}
		if _, err := n.volumePath(ctx, pod, vol); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", vol.Name, err))
		}
	}
	return errors.Join(errs...)
}

func hasToken(p *corev1.ProjectedVolumeSource) bool {
	return slices.ContainsFunc(p.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil })
}

// tokenDue reports whether a token of the projection is due for renewal.
func (n *NodeRuntime) tokenDue(pod *corev1.Pod, p *corev1.ProjectedVolumeSource) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, src := range p.Sources {
		if src.ServiceAccountToken == nil {
			continue
		}
		if cached, ok := n.tokens[tokenKey{pod: pod.UID, path: src.ServiceAccountToken.Path}]; !ok || !time.Now().Before(cached.renewAt) {
			return true
		}
	}
	return false
}

// serviceAccountToken is the token of a projection: the one written
// before while it is not due for renewal, else a new one bound to the pod.
func (n *NodeRuntime) serviceAccountToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	key := tokenKey{pod: pod.UID, path: src.Path}
	n.mu.Lock()
	n.initMaps()
	cached, ok := n.tokens[key]
	n.mu.Unlock()
	if ok && cached.audience == src.Audience && time.Now().Before(cached.renewAt) {
		return cached.token, nil
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	issued := time.Now()
	tok, err := n.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("service account token: %w", err)
	}
	n.mu.Lock()
	n.tokens[key] = podToken{token: tok.Status.Token, renewAt: tokenRenewal(issued, tok.Status.ExpirationTimestamp.Time), audience: src.Audience}
	n.mu.Unlock()
	return tok.Status.Token, nil
}

func (n *NodeRuntime) container(id string) (*runtime.Container, error) {
	n.mu.Lock()
	c, ok := n.byID[id]
	n.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := n.Containers.Load(id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	n.mu.Lock()
	n.initMaps()
	n.byID[id] = c
	n.mu.Unlock()
	return c, nil
}

// ContainerState is part of ContainerRuntime.
func (n *NodeRuntime) ContainerState(_ context.Context, id string) (ContainerState, error) {
	c, err := n.container(id)
	if err != nil {
		return ContainerState{}, err
	}
	s, err := c.State()
	if err != nil {
		return ContainerState{}, err
	}
	n.mu.Lock()
	imageID := n.images[id]
	n.mu.Unlock()
	st := ContainerState{Running: s.Running, ExitCode: int32(s.ExitCode), StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, ImageID: imageID}
	if s.Running {
		return st, nil
	}
	switch {
	case s.OOMKilled:
		st.Reason = "OOMKilled"
	case s.ExitCode == runtime.ExitCodeUnknown:
		st.ExitCode, st.Reason, st.Message = 137, "ContainerStatusUnknown", "the container exited while stead was not its parent, so its status is unknown"
	case s.ExitCode == 0:
		st.Reason = "Completed"
	default:
		st.Reason = "Error"
	}
	if msg, err := c.TerminationMessage(); err == nil && msg != "" {
		st.Message = msg
	}
	return st, nil
}

// StopContainer is part of ContainerRuntime.
func (n *NodeRuntime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	c, err := n.container(id)
	if err != nil {
		return err
	}
	select {
	case <-c.Exited():
		return nil
	default:
	}
	_ = c.Signal(syscall.SIGTERM)
	graceTimer := time.NewTimer(grace)
	defer graceTimer.Stop()
	select {
	case <-c.Exited():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-graceTimer.C:
	}
	_ = c.Signal(syscall.SIGKILL)
	select {
	case <-c.Exited():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("container %s still runs 10s after SIGKILL", id)
	}
}

// ExecSync is part of ContainerRuntime.
func (n *NodeRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, []byte, error) {
	c, err := n.container(id)
	if err != nil {
		return -1, nil, err
	}
	execCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		execCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out := &cappedOutput{limit: maxExecOutput}
	code, err := c.Exec(execCtx, runtime.ExecOptions{Args: cmd, Stdout: out, Stderr: out})
	// Exec kills the command when its context ends and reports the kill as
	// an exit code: only the context tells a timeout from a crash.
	if ctx.Err() == nil && errors.Is(execCtx.Err(), context.DeadlineExceeded) {
		return code, out.Bytes(), &execTimeoutError{cmd: cmd, timeout: timeout}
	}
	return code, out.Bytes(), err
}

// RemoveContainer is part of ContainerRuntime.
func (n *NodeRuntime) RemoveContainer(_ context.Context, id string) error {
	c, err := n.container(id)
	if err != nil {
		return err
	}
	if err := c.Remove(); err != nil {
		return err
	}
	n.mu.Lock()
	delete(n.byID, id)
	delete(n.images, id)
	n.mu.Unlock()
	return nil
}
