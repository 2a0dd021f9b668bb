// kstatus prints the kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the library Flux's
// health checks use) of the objects it reads on stdin: `kubectl get ... -o json` output, one
// object or a List. Output: a JSON array of {apiVersion, kind, namespace, name, status, message}.
// Built by hack/go-tool.sh: hack/go-tool.sh kstatus weft.dev/kstatus hack/kstatus
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Message    string `json:"message"`
}

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var obj unstructured.Unstructured
	if err := obj.UnmarshalJSON(in); err != nil {
		fail("stdin is not a Kubernetes object or List: %v", err)
	}
	items := []unstructured.Unstructured{obj}
	if obj.IsList() {
		list, err := obj.ToList()
		if err != nil {
			fail("reading the List: %v", err)
		}
		items = list.Items
	}
	out := make([]result, 0, len(items))
	for i := range items {
		u := &items[i]
		r, err := status.Compute(u)
		if err != nil {
			fail("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		out = append(out, result{
			APIVersion: u.GetAPIVersion(),
			Kind:       u.GetKind(),
			Namespace:  u.GetNamespace(),
			Name:       u.GetName(),
			Status:     r.Status.String(),
			Message:    r.Message,
		})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail("writing: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
