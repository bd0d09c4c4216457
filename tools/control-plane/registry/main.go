// The distribution registry with the filesystem storage driver only (the tests' registries keep
// their blobs in a directory: e2e/src/registry.rs): the full build also compiles the Azure, GCS
// and S3 drivers with their SDKs.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
