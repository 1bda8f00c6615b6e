package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/steadhq/stead/pkg/image"
)

// newImageCommand manages the node's image store, <data-dir>/images. It is
// safe to run while `stead up` uses the same data directory.
func newImageCommand(dataDir *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the node's images: import | ls | rm | pull",
	}
	open := func(opts ...image.Option) (*image.Store, error) {
		return image.Open(filepath.Join(*dataDir, "images"), opts...)
	}

	cmd.AddCommand(&cobra.Command{
		Use:   "import FILE...",
		Short: "Import images from docker save or OCI image layout tarballs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			store, err := open()
			if err != nil {
				return err
			}
			for _, file := range files {
				refs, err := store.Import(cmd.Context(), file)
				for _, ref := range refs {
					fmt.Fprintf(cmd.OutOrStdout(), "Imported %s\n", ref)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images, as crictl images does",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := open()
			if err != nil {
				return err
			}
			images, err := store.List()
			if err != nil {
				return err
			}
			return printImages(cmd.OutOrStdout(), images)
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"rmi"},
		Short:   "Remove images by reference or image ID",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			store, err := open()
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range refs {
				if err := store.Remove(ref); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Deleted: %s\n", ref)
			}
			return errors.Join(errs...)
		},
	})

	var (
		mirror   string
		insecure []string
		creds    string
	)
	pull := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from its registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := []image.Option{}
			if mirror != "" {
				opts = append(opts, image.WithRegistryMirror(mirror))
			}
			for _, host := range insecure {
				opts = append(opts, image.WithInsecureRegistry(host))
			}
			store, err := open(opts...)
			if err != nil {
				return err
			}
			var credentials []image.Credentials
			if creds != "" {
				user, password, ok := strings.Cut(creds, ":")
				if !ok {
					return errors.New("--creds wants USERNAME:PASSWORD")
				}
				ref, err := image.Resolve(args[0])
				if err != nil {
					return err
				}
				registry, _, _ := strings.Cut(ref, "/")
				credentials = append(credentials, image.Credentials{Registry: registry, Username: user, Password: password})
			}
			img, err := store.Pull(cmd.Context(), args[0], credentials, image.PullAlways)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Image is up to date for %s\n", img.ID)
			return nil
		},
	}
	pull.Flags().StringVar(&mirror, "registry-mirror", "", "try this endpoint before Docker Hub for docker.io images (e.g. https://mirror.gcr.io)")
	pull.Flags().StringArrayVar(&insecure, "insecure-registry", nil, "host[:port] to reach over plain HTTP (loopback registries always are)")
	pull.Flags().StringVar(&creds, "creds", "", "USERNAME:PASSWORD for the image's registry")
	cmd.AddCommand(pull)
	return cmd
}

// printImages writes the table crictl images writes.
func printImages(out io.Writer, images []image.Image) error {
	w := tabwriter.NewWriter(out, 20, 1, 3, ' ', 0)
	fmt.Fprintln(w, "IMAGE\tTAG\tIMAGE ID\tSIZE")
	for _, img := range images {
		repository, tag := image.SplitRef(img.Ref)
		id := strings.TrimPrefix(img.ID, "sha256:")
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", repository, tag, id, humanSize(img.Size))
	}
	return w.Flush()
}

// humanSize formats bytes with three significant digits in decimal units,
// as crictl (docker's go-units) does: 1.15MB, 142MB.
func humanSize(size int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	value := float64(size)
	i := 0
	for value >= 1000 && i < len(units)-1 {
		value /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", value, units[i])
}
