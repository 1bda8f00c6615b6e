package agent

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// What a container's process is, decided as the kubelet decides it from the
// pod spec and the image's config.

// ImageConfig is the part of an image's configuration a process needs.
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	WorkingDir           string
}

// processArgs follows the Kubernetes rules: command replaces the image's
// entrypoint and drops its cmd; args alone replace the cmd. $(VAR) names
// in both are expanded from the container's environment.
func processArgs(c *corev1.Container, img ImageConfig, env map[string]string) []string {
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(append(argv, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, img.Entrypoint...), c.Args...)
	default:
		argv = append(append(argv, img.Entrypoint...), img.Cmd...)
	}
	if len(c.Command) > 0 || len(c.Args) > 0 {
		for i := range argv {
			argv[i] = expand(argv[i], env)
		}
	}
	return argv
}

// expand replaces $(NAME) with env's value, leaves unknown references as
// written and turns $$ into $, as the API documents for command, args and
// env values.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// EnvSource reads what env values refer to. The kubelet reads them from
// the API (its Node authorizer lets it read what its pods reference).
type EnvSource interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

// ClientEnvSource reads through an API client.
type ClientEnvSource struct{ Client kubernetes.Interface }

func (s ClientEnvSource) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return s.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s ClientEnvSource) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// envInputs is what a container's environment is made from besides its
// spec.
type envInputs struct {
	source EnvSource
	image  ImageConfig
	// services are the Docker-link style variables of the namespace's
	// Services (KUBERNETES_SERVICE_HOST…).
	services map[string]string
	// allocatable stands in for limits a container does not set.
	allocatable corev1.ResourceList
}

// containerEnv builds the container's environment in the kubelet's order:
// the image's, service variables, envFrom, then env (later wins), with
// $(VAR) references in env values expanded from what came before. It
// returns the environment as KEY=VALUE lines and as a map.
func containerEnv(ctx context.Context, in envInputs, pod *corev1.Pod, c *corev1.Container) ([]string, map[string]string, error) {
	src, img, services := in.source, in.image, in.services
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	serviceKeys := make([]string, 0, len(services))
	for k := range services {
		serviceKeys = append(serviceKeys, k)
	}
	sort.Strings(serviceKeys)
	for _, k := range serviceKeys {
		set(k, services[k])
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := src.ConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if ptrTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom configMapRef %q: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			secret, err := src.Secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if ptrTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom secretRef %q: %w", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range secret.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		v, err := envValue(ctx, in, pod, c, e, env)
		if err != nil {
			return nil, nil, err
		}
		if v == nil {
			continue // an optional reference to something absent
		}
		set(e.Name, *v)
	}
	lines := make([]string, 0, len(order))
	for _, k := range order {
		lines = append(lines, k+"="+env[k])
	}
	return lines, env, nil
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func envValue(ctx context.Context, in envInputs, pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, sofar map[string]string) (*string, error) {
	src := in.source
	if e.ValueFrom == nil {
		v := expand(e.Value, sofar)
		return &v, nil
	}
	from := e.ValueFrom
	switch {
	case from.FieldRef != nil:
		v, err := fieldValue(pod, from.FieldRef.FieldPath)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		return &v, nil
	case from.ResourceFieldRef != nil:
		v, err := resourceValue(c, from.ResourceFieldRef, in.allocatable)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		return &v, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := src.ConfigMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if ptrTrue(ref.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("env %s: configMapKeyRef %q: %w", e.Name, ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if ptrTrue(ref.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("env %s: configmap %q has no key %q", e.Name, ref.Name, ref.Key)
		}
		return &v, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		secret, err := src.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if ptrTrue(ref.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("env %s: secretKeyRef %q: %w", e.Name, ref.Name, err)
		}
		data, ok := secret.Data[ref.Key]
		if !ok {
			if ptrTrue(ref.Optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("env %s: secret %q has no key %q", e.Name, ref.Name, ref.Key)
		}
		v := string(data)
		return &v, nil
	}
	return nil, fmt.Errorf("env %s: valueFrom names no source", e.Name)
}

// fieldValue answers the downward API's fieldRef paths.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	switch path {
	case "metadata.labels": // whole maps: downwardAPI volumes only
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		return joinIPs(pod.Status.HostIPs, func(ip corev1.HostIP) string { return ip.IP }), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return joinIPs(pod.Status.PodIPs, func(ip corev1.PodIP) string { return ip.IP }), nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

// formatMap writes a map as the kubelet's downwardAPI files do: key="value"
// lines, quoted as Go quotes, sorted by key.
func formatMap(m map[string]string) string {
	lines := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lines = append(lines, fmt.Sprintf("%v=%q", k, m[k]))
	}
	return strings.Join(lines, "\n")
}

func subscript(path, field string) (string, bool) {
	rest, ok := strings.CutPrefix(path, field+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

func joinIPs[T any](ips []T, ip func(T) string) string {
	s := make([]string, len(ips))
	for i := range ips {
		s[i] = ip(ips[i])
	}
	return strings.Join(s, ",")
}

// resourceValue answers resourceFieldRef: the container's limit or request,
// in units of the divisor, rounded up. An unset limit is the node's
// allocatable, as the kubelet answers; an unset request is 0.
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector, allocatable corev1.ResourceList) (string, error) {
	var q resource.Quantity
	var ok bool
	switch {
	case strings.HasPrefix(ref.Resource, "limits."):
		name := corev1.ResourceName(strings.TrimPrefix(ref.Resource, "limits."))
		if q, ok = c.Resources.Limits[name]; !ok {
			q, ok = allocatable[name]
		}
	case strings.HasPrefix(ref.Resource, "requests."):
		q, ok = c.Resources.Requests[corev1.ResourceName(strings.TrimPrefix(ref.Resource, "requests."))]
	default:
		return "", fmt.Errorf("resourceFieldRef %q is not supported", ref.Resource)
	}
	if !ok {
		return "0", nil
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	v := math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
	return strconv.FormatInt(int64(v), 10), nil
}

// hostsFile is the pod's /etc/hosts: its own names on its IP, with the
// fully qualified name a StatefulSet pod gets from its subdomain.
func hostsFile(pod *corev1.Pod, podIP, clusterDomain string) string {
	hostname := podHostname(pod)
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file (stead).\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if pod.Spec.Subdomain != "" {
		fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", podIP, hostname, pod.Spec.Subdomain, pod.Namespace, clusterDomain, hostname)
	} else {
		fmt.Fprintf(&b, "%s\t%s\n", podIP, hostname)
	}
	writeHostAliases(&b, pod.Spec.HostAliases)
	return b.String()
}

// nodeHostsFile is a hostNetwork pod's /etc/hosts: the node's, with the
// pod's hostAliases after it, as the kubelet writes it.
func nodeHostsFile(nodeHosts []byte, pod *corev1.Pod) string {
	var b strings.Builder
	b.Write(nodeHosts)
	writeHostAliases(&b, pod.Spec.HostAliases)
	return b.String()
}

func writeHostAliases(b *strings.Builder, aliases []corev1.HostAlias) {
	for _, h := range aliases {
		fmt.Fprintf(b, "\n# Entries added by HostAliases.\n%s\t%s\n", h.IP, strings.Join(h.Hostnames, "\t"))
	}
}

// podHostname is spec.hostname, or the pod's name: what makes web-0 web-0.
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	return pod.Name
}

// resolvConf is the pod's /etc/resolv.conf by its dnsPolicy: cluster DNS
// with the search path of its namespace (ClusterFirst), the node's
// (Default), or only what dnsConfig says (None).
func resolvConf(pod *corev1.Pod, clusterDNS, clusterDomain string, hostNameservers, hostSearches []string) string {
	var servers, searches []string
	options := []string{}
	switch pod.Spec.DNSPolicy {
	case corev1.DNSDefault:
		servers, searches = hostNameservers, hostSearches
	case corev1.DNSNone:
	case corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, "":
		if pod.Spec.HostNetwork && pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			servers, searches = hostNameservers, hostSearches
			break
		}
		servers = []string{clusterDNS}
		searches = []string{pod.Namespace + ".svc." + clusterDomain, "svc." + clusterDomain, clusterDomain}
		options = []string{"ndots:5"}
	}
	if cfg := pod.Spec.DNSConfig; cfg != nil {
		servers = append(servers, cfg.Nameservers...)
		searches = append(searches, cfg.Searches...)
		for _, o := range cfg.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			options = mergeOption(options, opt)
		}
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String()
}

// mergeOption sets opt, replacing an option of the same name.
func mergeOption(options []string, opt string) []string {
	name, _, _ := strings.Cut(opt, ":")
	for i, o := range options {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			options[i] = opt
			return options
		}
	}
	return append(options, opt)
}
