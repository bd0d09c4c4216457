// wasm-fetch fetches a Wasm module from an OCI registry with Istio's own code: the
// LocalFileCache of istio.io/istio/pkg/wasm that istio-agent builds in its xDS proxy
// (pkg/istio-agent/xds_proxy.go) and calls for every WasmPlugin with a remote module
// (pkg/wasm/convert.go). It prints the path of the module file the cache wrote, which is the
// file Envoy would be given, and the sha256 of its bytes.
//
//	wasm-fetch -url oci://127.0.0.1:5000/sticky-canary/filter:1.0 -sha256 HEX -insecure 127.0.0.1:5000 -dir DIR
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"time"

	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"
)

func main() {
	url := flag.String("url", "", "module URL, oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:DIGEST")
	checksum := flag.String("sha256", "", "expected digest (the WasmPlugin's sha256): the image manifest's, hex")
	insecure := flag.String("insecure", "", "registry host served over plain HTTP (the agent's WASM_INSECURE_REGISTRIES)")
	dir := flag.String("dir", "", "cache directory (the agent's is /var/lib/istio/data)")
	flag.Parse()
	if *url == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "wasm-fetch: -url and -dir are required")
		os.Exit(2)
	}
	insecureRegistries := sets.New[string]()
	if *insecure != "" {
		insecureRegistries.Insert(*insecure)
	}
	cache := wasm.NewLocalFileCache(*dir, wasm.Options{InsecureRegistries: insecureRegistries})
	defer cache.Cleanup()
	// The options convert.go passes: the WasmPlugin's sha256, and istiod's 30 s fetch timeout.
	path, err := cache.Get(*url, wasm.GetOptions{
		Checksum:       *checksum,
		ResourceName:   "wasm-fetch",
		RequestTimeout: 30 * time.Second,
		PullPolicy:     wasm.IfNotPresent,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasm-fetch: %v\n", err)
		os.Exit(1)
	}
	module, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasm-fetch: reading %s: %v\n", path, err)
		os.Exit(1)
	}
	sum := sha256.Sum256(module)
	fmt.Printf("path=%s\nsha256=%s\n", path, hex.EncodeToString(sum[:]))
}
