package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/cache"
	cliflag "k8s.io/component-base/cli/flag"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/steadhq/stead/pkg/scheduling"
)

// The upstream components are configured through their own flags, exactly
// as their binaries would be, and then run through their exported Run
// functions: their commands install process-wide signal handlers that can
// only be installed once, and stead needs one context to stop them all.

func parseFlags(component string, sets cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, name := range sets.Order {
		fs.AddFlagSet(sets.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	return nil
}

// runAPIServer runs upstream's API server with args; openAPIV3Cache is the
// file where it keeps the built-in APIs' OpenAPI v3 specs between starts.
func runAPIServer(ctx context.Context, args []string, openAPIV3Cache string) error {
	s := apiserveroptions.NewServerRunOptions()
	sets := s.Flags()
	if err := parseFlags("kube-apiserver", sets, args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	// apiserverapp.Run, with stead's bootstrap hooks in place of the two
	// that wait a second before they begin (bootstrap.go).
	if completed.InformerName == nil {
		if completed.InformerName, err = cache.NewInformerName("kube-apiserver"); err != nil {
			return err
		}
	}
	config, err := apiserverapp.NewConfig(completed)
	if err != nil {
		return err
	}
	config.KubeAPIs.ControlPlane.Generic.DisabledPostStartHooks.Insert(upstreamBootstrapHooks...)
	completedConfig, err := config.Complete()
	if err != nil {
		return err
	}
	openAPIV2, openAPIV3 := deferOpenAPI(config.KubeAPIs.ControlPlane.Generic)
	chain, err := apiserverapp.CreateServerChain(completedConfig)
	if err != nil {
		return err
	}
	builtIn, err := builtInAPIServer(chain.GenericAPIServer)
	if err != nil {
		return err
	}
	serveOpenAPIV2Lazily(builtIn, openAPIV2)
	openAPIV3Specs := serveOpenAPIV3(builtIn, openAPIV3, newOpenAPIV3Cache(openAPIV3Cache, args))
	if err := addBootstrapHooks(chain.GenericAPIServer); err != nil {
		return err
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return err
	}
	openAPIV3Specs.releaseDefinitions()
	return prepared.Run(ctx)
}

// disabledControllers are the upstream controllers stead does not start:
//   - statefulset: pkg/statefulset replaces it;
//   - horizontal-pod-autoscaler: needs a metrics API a bare cluster lacks;
//   - resourcequota: watches every resource type to count usage, a real cost
//     in memory for a multi-tenant feature a one-binary cluster rarely uses;
//   - attach-detach: stead's volumes are local and never attached;
//   - storage-version-migrator and the ClusterTrustBundle publisher: serve
//     API migrations and beta certificate bundles stead does not use;
//   - validatingadmissionpolicy-status: writes type-checking warnings into
//     ValidatingAdmissionPolicies' status, and holds a second copy of every
//     OpenAPI definition (7.5 MB in a heap profile) to do it. The policies
//     themselves are enforced by the API server, with or without it.
var disabledControllers = []string{
	names.StatefulSetController,
	names.HorizontalPodAutoscalerController,
	names.ResourceQuotaController,
	names.PersistentVolumeAttachDetachController,
	names.StorageVersionMigratorController,
	names.KubeAPIServerClusterTrustBundlePublisherController,
	names.ValidatingAdmissionPolicyStatusController,
}

func runControllerManager(ctx context.Context, args []string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, off, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	sets := s.Flags(known, off, aliases)
	s.ParsedFlags = &sets
	controllers := "--controllers=*,-" + strings.Join(disabledControllers, ",-")
	if err := parseFlags("kube-controller-manager", sets, append([]string{controllers}, args...)); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, off, aliases)
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, c.Complete())
}

func runScheduler(ctx context.Context, args []string) error {
	opts := scheduleroptions.NewOptions()
	if err := parseFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-scheduler")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	cc, sched, err := schedulerapp.Setup(ctx, opts, schedulerapp.WithPlugin(scheduling.PromptVolumeBindingName, scheduling.NewPromptVolumeBinding))
	if err != nil {
		return err
	}
	return schedulerapp.Run(ctx, cc, sched)
}
