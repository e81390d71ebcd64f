// monitorcheck: the Prometheus Operator objects the chart renders
// (ServiceMonitor, PodMonitor), decoded strictly into the operator's own Go
// types: a field the operator does not know, or a value of the wrong type,
// fails. The Kubernetes OpenAPI schemas (validate.py) do not have these CRDs.
//
// usage: monitorcheck FILE... (multi-document YAML; other kinds are skipped)
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	bad, checked := 0, 0
	for _, f := range os.Args[1:] {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if yaml.Unmarshal(doc, &head) != nil || !strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") {
				continue
			}
			var obj interface{}
			switch head.Kind {
			case "ServiceMonitor":
				obj = &monitoringv1.ServiceMonitor{}
			case "PodMonitor":
				obj = &monitoringv1.PodMonitor{}
			default:
				fmt.Printf("INVALID %s: kind %s is not checked here\n", f, head.Kind)
				bad++
				continue
			}
			checked++
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				fmt.Printf("INVALID %s: %s: %v\n", f, head.Kind, err)
				bad++
			}
		}
	}
	fmt.Printf("monitorcheck: %d Prometheus Operator objects decoded strictly, %d invalid\n", checked, bad)
	if bad > 0 || checked == 0 {
		os.Exit(1)
	}
}
