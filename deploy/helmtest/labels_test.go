package helmtest

import "k8s.io/apimachinery/pkg/labels"

func labelSet(l map[string]string) labels.Set { return labels.Set(l) }
