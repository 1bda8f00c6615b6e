package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateGetWatchDelete(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl("", "create", "namespace", "crud")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines, err := c.watchLines(ctx, "-n", "crud", "get", "configmaps", "-w", "--output-watch-events", "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,DATA:.object.data.k", "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	// The watch only counts once it has listed what exists (kube-root-ca.crt
	// may or may not be there yet), so wait for a first line of our own.
	c.mustKubectl(`apiVersion: v1
kind: ConfigMap
metadata: {name: first, namespace: crud}
data: {k: v1}
`, "apply", "-f", "-")
	out := c.mustKubectl("", "-n", "crud", "get", "configmap", "first", "-o", "jsonpath={.data.k}")
	if out != "v1" {
		t.Fatalf("get first: data.k = %q, want v1", out)
	}
	c.mustKubectl("", "-n", "crud", "patch", "configmap", "first", "--type=merge", "-p", `{"data":{"k":"v2"}}`)
	c.mustKubectl("", "-n", "crud", "delete", "configmap", "first")
	if out, err := c.kubectl("", "-n", "crud", "get", "configmap", "first"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("get after delete: err=%v out=%q, want NotFound", err, out)
	}

	want := []string{"ADDED first v1", "MODIFIED first v2", "DELETED first v2"}
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended early; saw %q", got)
			}
			fields := strings.Join(strings.Fields(line), " ")
			if strings.Contains(fields, " first ") {
				got = append(got, fields)
			}
		case <-timeout:
			t.Fatalf("watch saw %q, want %q", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("watch events = %q, want %q", got, want)
		}
	}
}

// The binary is built without Go-plugin support for kustomize (Makefile);
// kubectl's kustomize must still work as it does in the stock kubectl.
func TestApplyKustomization(t *testing.T) {
	c := sharedCluster(t)
	dir := t.TempDir()
	kustomization := `namespace: kustomized
namePrefix: dev-
resources: [namespace.yaml]
configMapGenerator:
- name: settings
  literals: [mode=fast]
  options: {disableNameSuffixHash: true}
`
	namespace := "apiVersion: v1\nkind: Namespace\nmetadata: {name: kustomized}\n"
	for name, text := range map[string]string{"kustomization.yaml": kustomization, "namespace.yaml": namespace} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.mustKubectl("", "apply", "-k", dir)
	out := c.mustKubectl("", "-n", "kustomized", "get", "configmap", "dev-settings", "-o", "jsonpath={.data.mode}")
	if out != "fast" {
		t.Fatalf("dev-settings: data.mode = %q, want fast", out)
	}
	c.mustKubectl("", "delete", "-k", dir, "--wait=false")
}

func TestDeploymentGetsReplicaSet(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl("", "create", "deployment", "web", "--image=nginx:1.9.1", "--replicas=2")
	eventually(t, 30*time.Second, "ReplicaSet with 2 pods for deployment web", func() error {
		out, err := c.kubectl("", "get", "replicasets", "-l", "app=web", "-o", "jsonpath={.items[0].spec.replicas}/{.items[0].metadata.ownerReferences[0].name}")
		if err != nil || out != "2/web" {
			return fmt.Errorf("%v %q", err, out)
		}
		out, err = c.kubectl("", "get", "pods", "-l", "app=web", "-o", "name")
		if n := len(strings.Fields(out)); err != nil || n != 2 {
			return fmt.Errorf("%d pods: %v %q", n, err, out)
		}
		return nil
	})
	// Garbage collection is the upstream controller's too: deleting the
	// Deployment takes its ReplicaSet and pods with it.
	c.mustKubectl("", "delete", "deployment", "web", "--cascade=foreground", "--wait=true", "--timeout=60s")
	eventually(t, 30*time.Second, "ReplicaSet of deleted deployment is gone", func() error {
		out, err := c.kubectl("", "get", "replicasets", "-l", "app=web", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
}

func TestAuthentication(t *testing.T) {
	c := sharedCluster(t)
	ca := filepath.Join(c.dataDir, "pki", "ca.crt")
	// A bare client with only the server's address and CA: no credentials.
	bare := func(extra ...string) (string, error) {
		return c.kubectl("", append([]string{"--kubeconfig=/dev/null", "--server=" + c.url(), "--certificate-authority=" + ca}, extra...)...)
	}

	t.Run("anonymous is rejected", func(t *testing.T) {
		// kubectl with no credentials would prompt for a password, so ask
		// the way an unauthenticated program does.
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(ca)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("CA %s: %v", ca, err)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := client.Get(c.url() + "/api/v1/namespaces")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous GET /api/v1/namespaces: %s, want 401", resp.Status)
		}
	})

	t.Run("service account token without rights gets 403", func(t *testing.T) {
		c.mustKubectl("", "create", "serviceaccount", "robot")
		token := strings.TrimSpace(c.mustKubectl("", "create", "token", "robot"))
		out, err := bare("--token="+token, "get", "secrets")
		if err == nil || !strings.Contains(out, "Forbidden") || !strings.Contains(out, "system:serviceaccount:default:robot") {
			t.Fatalf("robot get secrets: err=%v out=%q, want Forbidden for the robot", err, out)
		}
		// RBAC grants, and then the same token may.
		c.mustKubectl("", "create", "role", "read-secrets", "--verb=list", "--resource=secrets")
		c.mustKubectl("", "create", "rolebinding", "robot-reads", "--role=read-secrets", "--serviceaccount=default:robot")
		eventually(t, 10*time.Second, "robot may list secrets after the rolebinding", func() error {
			out, err := bare("--token="+token, "get", "secrets")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})
}

func TestInvalidFieldIsRejectedWithItsPath(t *testing.T) {
	c := sharedCluster(t)
	for _, tc := range []struct {
		name     string
		manifest string
		args     []string
		want     []string
	}{
		{
			name: "negative replicas",
			manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: bad-replicas}
spec:
  replicas: -1
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: c, image: busybox:1.28.4}]}
`,
			want: []string{"spec.replicas", "Invalid value"},
		},
		{
			name: "unknown field",
			manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: bad-field}
spec:
  replica: 3
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec: {containers: [{name: c, image: busybox:1.28.4}]}
`,
			want: []string{`unknown field "spec.replica"`},
		},
		{
			name: "selector does not match template",
			manifest: `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: bad-selector}
spec:
  serviceName: x
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: two}}
    spec: {containers: [{name: c, image: busybox:1.28.4}]}
`,
			want: []string{"spec.template.metadata.labels", "does not match"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.kubectl(tc.manifest, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("apply succeeded; want an error naming %q:\n%s", tc.want, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("error %q does not contain %q", out, w)
				}
			}
			name := strings.Fields(strings.SplitN(tc.manifest, "name: ", 2)[1])[0]
			name = strings.TrimSuffix(name, "}")
			kind := strings.Fields(strings.SplitN(tc.manifest, "kind: ", 2)[1])[0]
			if out, err := c.kubectl("", "get", kind, name); err == nil || !strings.Contains(out, "NotFound") {
				t.Errorf("%s/%s exists after a rejected apply: %v %s", kind, name, err, out)
			}
		})
	}
}

func TestObjectsSurviveRestartAndKill(t *testing.T) {
	c := newCluster(t)
	caBefore, err := os.ReadFile(filepath.Join(c.dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c.mustKubectl("", "create", "configmap", "before-stop", "--from-literal=k=1")
	c.stop()
	c.start()
	c.mustKubectl("", "get", "configmap", "before-stop")

	// Written and acknowledged, then SIGKILL with no chance to flush.
	for i := range 20 {
		c.mustKubectl("", "create", "configmap", fmt.Sprintf("before-kill-%d", i), "--from-literal=k=1")
	}
	c.kill()
	c.start()
	out := c.mustKubectl("", "get", "configmaps", "-o", "name")
	for _, name := range []string{"before-stop", "before-kill-0", "before-kill-19"} {
		if !strings.Contains(out, "configmap/"+name+"\n") {
			t.Errorf("configmap %s lost across restart and kill -9; have:\n%s", name, out)
		}
	}
	caAfter, err := os.ReadFile(filepath.Join(c.dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("the cluster CA changed across restarts; certificates must be reused")
	}
	if fi, err := os.Stat(c.kubeconfig()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode: %v %v, want 0600", fi.Mode(), err)
	}
}

func TestDataDirLock(t *testing.T) {
	c := sharedCluster(t)
	second := &cluster{t: t, dataDir: c.dataDir, port: freePort(t)}
	if err := second.startNoWait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.exited:
	case <-time.After(30 * time.Second):
		second.kill()
		t.Fatalf("a second stead up on a data dir in use did not fail:\n%s", second.stderr)
	}
	if second.waitErr == nil {
		t.Fatalf("second stead up exited 0:\n%s", second.stderr)
	}
	if msg := second.stderr.String(); !strings.Contains(msg, "in use") || !strings.Contains(msg, c.dataDir) {
		t.Fatalf("second stead up said %q; want it to name the data dir in use", msg)
	}
	// The first one is unharmed.
	c.mustKubectl("", "get", "namespaces")
}

func TestBadInvocations(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"up", "--data-dir", file}, "not a directory"},
		{[]string{"up", "--data-dir", t.TempDir(), "--https-port", "70000"}, "--https-port"},
		{[]string{"up", "--data-dir", t.TempDir(), "--bind-address", "nowhere"}, "--bind-address"},
		{[]string{"agent"}, "--server is required"},
		{[]string{"agent", "--server", "http://127.0.0.1:1", "--token", "x"}, "--server \"http://127.0.0.1:1\": want https://host:port"},
		{[]string{"agent", "--server", "https://127.0.0.1:1"}, "--token is required"},
		{[]string{"agent", "--server", "https://127.0.0.1:1", "--token", "abcdef.0123456789abcdef"}, "--token: not a stead join token"},
		{[]string{"agent", "--server", "https://127.0.0.1:1", "--token", "K10" + strings.Repeat("0", 64) + "::abcdef.0123456789abcdef", "--node-ip", "nowhere"}, "--node-ip \"nowhere\""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(steadBin, tc.args...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0, want failure:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output %q does not contain %q", out, tc.want)
			}
		})
	}
}

func TestNodeRegistersAndRenewsItsLease(t *testing.T) {
	c := sharedCluster(t)
	name := c.mustKubectl("", "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
	if len(strings.Fields(name)) != 1 {
		t.Fatalf("nodes = %q, want the one node of stead up", name)
	}
	ready := c.mustKubectl("", "get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
	if ready != "True/KubeletReady" {
		t.Errorf("Ready condition = %q, want True/KubeletReady", ready)
	}
	if cidr := c.mustKubectl("", "get", "node", name, "-o", "jsonpath={.spec.podCIDR}"); !strings.HasSuffix(cidr, ".0/24") {
		t.Errorf("podCIDR = %q, want a /24 of the cluster's range", cidr)
	}
	holder := c.mustKubectl("", "-n", "kube-node-lease", "get", "lease", name, "-o", "jsonpath={.spec.holderIdentity}")
	if holder != name {
		t.Errorf("lease holder = %q, want %q", holder, name)
	}
}

func TestDefaultStorageClass(t *testing.T) {
	c := sharedCluster(t)
	out := c.mustKubectl("", "get", "storageclass", "local-path", "-o", `jsonpath={.provisioner} {.volumeBindingMode} {.allowVolumeExpansion} {.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}`)
	if out != "stead.dev/local-path WaitForFirstConsumer true true" {
		t.Fatalf("local-path class: %q", out)
	}
	// A claim without a class gets the default, and waits for its first
	// consumer rather than binding at once.
	c.mustKubectl(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: waits}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`, "apply", "-f", "-")
	eventually(t, 20*time.Second, "claim gets the default class and waits", func() error {
		out, err := c.kubectl("", "get", "pvc", "waits", "-o", "jsonpath={.spec.storageClassName} {.status.phase}")
		if err != nil || out != "local-path Pending" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
}

// TestPodsReachTheAPIServer: in-cluster clients connect to the kubernetes
// Service's ClusterIP (KUBERNETES_SERVICE_HOST) or to
// kubernetes.default.svc; with the embedded etcd stead publishes its
// endpoint itself, at the node's bridge address, relayed to the API server
// on loopback.
func TestPodsReachTheAPIServer(t *testing.T) {
	podsReachTheAPIServer(t, sharedCluster(t))
}

// podsReachTheAPIServer checks that the `kubernetes` Service's endpoints
// are the node's bridge address, and that a pod connects through them.
func podsReachTheAPIServer(t *testing.T, c *cluster) {
	t.Helper()
	const ns = "incluster"
	c.mustKubectl("", "create", "namespace", ns)
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox:1.28.4, command: [sleep, "3600"]}
`, "-n", ns, "apply", "-f", "-")
	eventually(t, 60*time.Second, "client Ready", func() error {
		out, err := c.kubectl("", "-n", ns, "get", "pod", "client", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})

	gateway := strings.TrimSpace(c.mustKubectl("", "get", "node", "-o", "jsonpath={.items[0].spec.podCIDR}"))
	gateway = strings.TrimSuffix(gateway, ".0/24") + ".1"
	want := fmt.Sprintf("%s:%d", gateway, c.port)
	slices := c.mustKubectl("", "-n", "default", "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes",
		"-o", `jsonpath={range .items[*]}{.endpoints[0].addresses[0]}:{.ports[0].port} {end}`)
	if got := strings.TrimSpace(slices); got != want {
		t.Errorf("kubernetes Service's EndpointSlices: %q, want one at %s", got, want)
	}
	// kubectl warns that v1 Endpoints are deprecated; the answer is the
	// last line.
	endpoints := c.mustKubectl("", "-n", "default", "get", "endpoints", "kubernetes",
		"-o", `jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}`)
	if lines := strings.Split(endpoints, "\n"); lines[len(lines)-1] != want {
		t.Errorf("kubernetes Endpoints: %q, want %s", endpoints, want)
	}

	// An HTTP request to the API server's TLS port is answered by Go's
	// TLS server itself: proof that the connection reached it.
	const tlsAnswer = "Client sent an HTTP request to an HTTPS server."
	for _, host := range []string{"$KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT", "kubernetes.default.svc 443"} {
		out, err := c.kubectl("", "-n", ns, "exec", "client", "--", "sh", "-c", `printf 'GET /version HTTP/1.0\r\n\r\n' | nc `+host)
		if err != nil || !strings.Contains(out, tlsAnswer) {
			t.Errorf("from a pod, nc %s: %v\n%s", host, err, out)
		}
	}
	c.mustKubectl("", "delete", "namespace", ns, "--wait=false")
}

// OpenAPI as clients read it: v2 (built when first asked for, see
// pkg/server/openapi.go) with the built-in APIs and a custom resource
// merged in, v3 (kept compressed, ibid.) by group version and through
// kubectl explain.
func TestOpenAPIForBuiltInAndCustomResources(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.e2e.stead.io}
spec:
  group: e2e.stead.io
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: what the gadget does
            properties: {size: {type: integer}}
`, "apply", "-f", "-")
	defer c.kubectl("", "delete", "crd", "gadgets.e2e.stead.io", "--wait=false")
	c.mustKubectl("", "wait", "--for=condition=Established", "crd/gadgets.e2e.stead.io", "--timeout=30s")

	type swagger struct {
		Paths       map[string]json.RawMessage `json:"paths"`
		Definitions map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	eventually(t, 30*time.Second, "OpenAPI v2 with the built-in APIs and the custom resource", func() error {
		out, err := c.kubectl("", "get", "--raw", "/openapi/v2")
		if err != nil {
			return fmt.Errorf("%v: %.200s", err, out)
		}
		var v2 swagger
		if err := json.Unmarshal([]byte(out), &v2); err != nil {
			return err
		}
		for _, path := range []string{"/api/v1/namespaces/{namespace}/pods", "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/scale", "/apis/e2e.stead.io/v1/namespaces/{namespace}/gadgets"} {
			if _, ok := v2.Paths[path]; !ok {
				return fmt.Errorf("no path %s among %d", path, len(v2.Paths))
			}
		}
		for def, property := range map[string]string{"io.k8s.api.core.v1.PodSpec": "containers", "io.k8s.api.apps.v1.StatefulSetSpec": "volumeClaimTemplates", "io.stead.e2e.v1.Gadget": "spec"} {
			if _, ok := v2.Definitions[def].Properties[property]; !ok {
				return fmt.Errorf("no definition %s with %s among %d", def, property, len(v2.Definitions))
			}
		}
		return nil
	})
	eventually(t, 30*time.Second, "OpenAPI v3 of the built-in APIs and the custom resource", func() error {
		out, err := c.kubectl("", "get", "--raw", "/openapi/v3")
		if err != nil {
			return fmt.Errorf("%v: %.200s", err, out)
		}
		var discovery struct {
			Paths map[string]struct {
				ServerRelativeURL string `json:"serverRelativeURL"`
			} `json:"paths"`
		}
		if err := json.Unmarshal([]byte(out), &discovery); err != nil {
			return err
		}
		for gv, schema := range map[string]string{"api/v1": "io.k8s.api.core.v1.PodSpec", "apis/apps/v1": "io.k8s.api.apps.v1.StatefulSetSpec", "apis/e2e.stead.io/v1": "io.stead.e2e.v1.Gadget"} {
			url := discovery.Paths[gv].ServerRelativeURL
			if !strings.Contains(url, "?hash=") {
				return fmt.Errorf("%s in the discovery document: %q", gv, url)
			}
			out, err := c.kubectl("", "get", "--raw", url)
			if err != nil {
				return fmt.Errorf("%s: %v: %.200s", url, err, out)
			}
			var spec struct {
				Components struct {
					Schemas map[string]json.RawMessage `json:"schemas"`
				} `json:"components"`
			}
			if err := json.Unmarshal([]byte(out), &spec); err != nil {
				return fmt.Errorf("%s: %v", url, err)
			}
			if _, ok := spec.Components.Schemas[schema]; !ok {
				return fmt.Errorf("%s: no schema %s among %d", url, schema, len(spec.Components.Schemas))
			}
		}
		return nil
	})
	for resource, want := range map[string]string{"statefulsets.spec.persistentVolumeClaimRetentionPolicy": "whenScaled", "gadgets.spec": "what the gadget does"} {
		eventually(t, 30*time.Second, "kubectl explain "+resource, func() error {
			if out, err := c.kubectl("", "explain", resource); err != nil || !strings.Contains(out, want) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
}
