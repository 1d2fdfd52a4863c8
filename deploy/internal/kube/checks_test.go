package kube_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
)

// restrictedContainer is a container that passes every rule of
// CheckRestricted.
func restrictedContainer(name string) corev1.Container {
	return corev1.Container{
		Name: name,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	}
}

// restrictedPod is a pod spec that passes every rule of CheckRestricted.
func restrictedPod() corev1.PodSpec {
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   new(true),
			RunAsUser:      new(int64(10001)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		AutomountServiceAccountToken: new(false),
		InitContainers:               []corev1.Container{restrictedContainer("init")},
		Containers:                   []corev1.Container{restrictedContainer("app")},
	}
}

func TestCheckRestricted(t *testing.T) {
	tests := []struct {
		name   string
		change func(*corev1.PodSpec)
		want   []string
	}{
		{name: "restricted", change: func(*corev1.PodSpec) {}},
		{
			name: "nothing set",
			change: func(s *corev1.PodSpec) {
				*s = corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}, Containers: []corev1.Container{{Name: "app", SecurityContext: &corev1.SecurityContext{}}}}
			},
			want: []string{
				"p: pod runAsNonRoot is not true",
				"p: pod runAsUser is not a non-root uid",
				"p: pod seccompProfile is not RuntimeDefault",
				"p: service-account token mounted",
				"p/init: no securityContext",
				"p/app: allowPrivilegeEscalation not false",
				"p/app: root filesystem writable",
				"p/app: capabilities nil, want drop ALL, add none",
				"p/app: no CPU request",
				"p/app: no memory limit",
			},
		},
		{
			name: "root pod",
			change: func(s *corev1.PodSpec) {
				s.SecurityContext.RunAsNonRoot = new(false)
				s.SecurityContext.RunAsUser = new(int64(0))
				s.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined
			},
			want: []string{"p: pod runAsNonRoot is not true", "p: pod runAsUser is not a non-root uid", "p: pod seccompProfile is not RuntimeDefault"},
		},
		{
			name:   "token mounted by default",
			change: func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = nil },
			want:   []string{"p: service-account token mounted"},
		},
		{name: "host network", change: func(s *corev1.PodSpec) { s.HostNetwork = true }, want: []string{"p: host namespaces"}},
		{name: "host PID", change: func(s *corev1.PodSpec) { s.HostPID = true }, want: []string{"p: host namespaces"}},
		{name: "host IPC", change: func(s *corev1.PodSpec) { s.HostIPC = true }, want: []string{"p: host namespaces"}},
		{
			name: "privileged root container",
			change: func(s *corev1.PodSpec) {
				sc := s.Containers[0].SecurityContext
				sc.Privileged, sc.RunAsUser, sc.AllowPrivilegeEscalation = new(true), new(int64(0)), new(true)
			},
			want: []string{"p/app: allowPrivilegeEscalation not false", "p/app: privileged", "p/app: runs as root"},
		},
		{
			name: "added capability",
			change: func(s *corev1.PodSpec) {
				s.InitContainers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
			},
			want: []string{"p/init: capabilities &Capabilities{Add:[NET_ADMIN],Drop:[ALL],}, want drop ALL, add none"},
		},
		{
			name:   "no resources",
			change: func(s *corev1.PodSpec) { s.Containers[0].Resources = corev1.ResourceRequirements{} },
			want:   []string{"p/app: no CPU request", "p/app: no memory limit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := restrictedPod()
			tt.change(&spec)
			if got := kube.CheckRestricted("p", spec); !slices.Equal(got, tt.want) {
				t.Errorf("CheckRestricted:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// scaledEdge is an edge Deployment and an HPA that pass CheckEdgeScaling.
func scaledEdge() (*appsv1.Deployment, *autoscalingv2.HorizontalPodAutoscaler) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "edge"}}
	avg := resource.MustParse("1000")
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "edge-hpa"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "edge", APIVersion: "apps/v1"},
			MinReplicas:    new(int32(2)),
			MaxReplicas:    10,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: kube.EdgeConnectionsMetric},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &avg},
				}},
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(70))},
				}},
			},
		},
	}
	return d, h
}

func TestCheckEdgeScaling(t *testing.T) {
	const (
		noConns = "HPA edge-hpa: no Pods metric " + kube.EdgeConnectionsMetric + " with an AverageValue target"
		noCPU   = "HPA edge-hpa: no CPU utilization target between 50% and 90%"
	)
	tests := []struct {
		name   string
		change func(*appsv1.Deployment, *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler
		want   []string
	}{
		{name: "scaled", change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
			return []*autoscalingv2.HorizontalPodAutoscaler{h}
		}},
		{
			name: "replicas and no HPA",
			change: func(d *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				d.Spec.Replicas = new(int32(3))
				h.Spec.ScaleTargetRef.APIVersion = "apps/v1beta1"
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{"Deployment edge sets replicas 3 although an HPA scales it", "no HPA targets Deployment edge"},
		},
		{
			name: "the last HPA targeting the edge counts",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				bare := h.DeepCopy()
				bare.Spec.Metrics = nil
				return []*autoscalingv2.HorizontalPodAutoscaler{h, bare}
			},
			want: []string{noConns, noCPU},
		},
		{
			name: "connections target not an average value",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				h.Spec.Metrics[0].Pods.Target.Type = autoscalingv2.ValueMetricType
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{noConns},
		},
		{
			name: "zero connections target",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				zero := resource.MustParse("0")
				h.Spec.Metrics[0].Pods.Target.AverageValue = &zero
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{noConns},
		},
		{
			name: "CPU target too high",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				h.Spec.Metrics[1].Resource.Target.AverageUtilization = new(int32(95))
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{noCPU},
		},
		{
			name: "CPU as an average value",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				h.Spec.Metrics[1].Resource.Target.Type = autoscalingv2.AverageValueMetricType
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{noCPU},
		},
		{
			name: "one replica minimum",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				h.Spec.MinReplicas = new(int32(1))
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{"HPA edge-hpa: 1..10, want min ≥ 2 and room to grow"},
		},
		{
			name: "no room to grow",
			change: func(_ *appsv1.Deployment, h *autoscalingv2.HorizontalPodAutoscaler) []*autoscalingv2.HorizontalPodAutoscaler {
				h.Spec.MinReplicas = nil
				return []*autoscalingv2.HorizontalPodAutoscaler{h}
			},
			want: []string{"HPA edge-hpa: unset..10, want min ≥ 2 and room to grow"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, h := scaledEdge()
			hpas := tt.change(d, h)
			got := kube.CheckEdgeScaling(d, hpas)
			if !slices.Equal(got, tt.want) {
				t.Errorf("CheckEdgeScaling:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
