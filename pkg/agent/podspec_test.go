package agent

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestProcessArgs(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx", "-g", "daemon off;"}}
	env := map[string]string{"PORT": "8080"}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}},
		{"command replaces entrypoint and drops cmd", []string{"sh", "-c"}, nil, []string{"sh", "-c"}},
		{"args replace cmd only", nil, []string{"httpd", "-p", "$(PORT)"}, []string{"/docker-entrypoint.sh", "httpd", "-p", "8080"}},
		{"command and args, escapes and unknown names kept", []string{"echo"}, []string{"$$(PORT)", "$(NOPE)", "$(PORT)"}, []string{"echo", "$(PORT)", "$(NOPE)", "8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := processArgs(&corev1.Container{Command: tc.command, Args: tc.args}, img, env)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContainerEnv(t *testing.T) {
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "settings"}, Data: map[string]string{"MODE": "replica", "LEVEL": "3"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "creds"}, Data: map[string][]byte{"password": []byte("s3cret")}},
	)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "web-0", UID: "u-1", Labels: map[string]string{"app": "nginx"}},
		Spec:       corev1.PodSpec{NodeName: "vm", ServiceAccountName: "default"},
		Status:     corev1.PodStatus{PodIP: "10.42.0.5", HostIP: "127.0.0.1"},
	}
	c := &corev1.Container{
		Name: "main",
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		},
		EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "CPU_MILLI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "MISSING_OK", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: ptr.To(true)}}},
			{Name: "URL", Value: "http://$(POD_IP):80/$(CFG_MODE)"},
			{Name: "PATH", Value: "/opt/bin:$(PATH)"},
		},
	}
	in := envInputs{
		source:      ClientEnvSource{Client: client},
		image:       ImageConfig{Env: []string{"PATH=/usr/bin:/bin", "NGINX_VERSION=1.9.1"}},
		services:    map[string]string{"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443"},
		allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	}
	lines, env, err := containerEnv(context.Background(), in, pod, c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"NGINX_VERSION": "1.9.1", "KUBERNETES_SERVICE_HOST": "10.43.0.1", "CFG_MODE": "replica", "CFG_LEVEL": "3",
		"POD_NAME": "web-0", "APP": "nginx", "POD_IP": "10.42.0.5", "MEM_MI": "64", "CPU_LIMIT": "2", "CPU_MILLI": "250",
		"PASSWORD": "s3cret", "URL": "http://10.42.0.5:80/replica", "PATH": "/opt/bin:/usr/bin:/bin",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["MISSING_OK"]; ok {
		t.Error("optional reference to a missing configmap set a variable")
	}
	if !slices.Contains(lines, "PATH=/opt/bin:/usr/bin:/bin") || len(lines) != len(env) {
		t.Errorf("lines %q do not match the map", lines)
	}

	// A required reference to something missing is an error naming it.
	c.Env = append(c.Env, corev1.EnvVar{Name: "NEEDED", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "nope"}}})
	if _, _, err := containerEnv(context.Background(), in, pod, c); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing required key: err = %v", err)
	}
}

func TestHostsFile(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0"}, Spec: corev1.PodSpec{Subdomain: "nginx"}}
	got := hostsFile(pod, "10.42.0.5", "cluster.local")
	if !strings.Contains(got, "10.42.0.5\tweb-0.nginx.default.svc.cluster.local\tweb-0\n") || !strings.Contains(got, "127.0.0.1\tlocalhost\n") {
		t.Fatalf("hosts file for a StatefulSet pod:\n%s", got)
	}
	pod.Spec.Subdomain, pod.Spec.Hostname = "", "custom"
	if got := hostsFile(pod, "10.42.0.6", "cluster.local"); !strings.Contains(got, "10.42.0.6\tcustom\n") {
		t.Fatalf("hosts file with spec.hostname:\n%s", got)
	}
}

// A hostNetwork pod's /etc/hosts is the node's, with its hostAliases.
func TestNodeHostsFile(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, HostAliases: []corev1.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"db", "db.internal"}}}}}
	got := nodeHostsFile([]byte("127.0.0.1\tlocalhost\n192.0.2.1\tthe-node\n"), pod)
	want := "127.0.0.1\tlocalhost\n192.0.2.1\tthe-node\n\n# Entries added by HostAliases.\n192.0.2.9\tdb\tdb.internal\n"
	if got != want {
		t.Errorf("hosts file of a hostNetwork pod:\n%q\nwant\n%q", got, want)
	}
}

func TestResolvConf(t *testing.T) {
	hostNS, hostSearch := []string{"192.0.2.53"}, []string{"example.internal"}
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want string
	}{
		{"ClusterFirst", corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst},
			"nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"Default is the node's", corev1.PodSpec{DNSPolicy: corev1.DNSDefault},
			"nameserver 192.0.2.53\nsearch example.internal\n"},
		{"hostNetwork with ClusterFirst falls back to the node's", corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst, HostNetwork: true},
			"nameserver 192.0.2.53\nsearch example.internal\n"},
		{"None takes dnsConfig only", corev1.PodSpec{DNSPolicy: corev1.DNSNone, DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"1.2.3.4"}, Searches: []string{"a.b"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "edns0"}}}},
			"nameserver 1.2.3.4\nsearch a.b\noptions ndots:2 edns0\n"},
		{"dnsConfig options override ClusterFirst's", corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst, DNSConfig: &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}}}},
			"nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}, Spec: tc.spec}
			if got := resolvConf(pod, "10.43.0.10", "cluster.local", hostNS, hostSearch); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
