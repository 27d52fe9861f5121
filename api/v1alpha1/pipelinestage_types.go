package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PipelineStageSpec maps one stage of a deployment pipeline to an org.
type PipelineStageSpec struct {
	// pipeline is the name of the pipeline this stage belongs to, for example "release".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Pipeline string `json:"pipeline"`

	// order of the stage in its pipeline, from 0 (first deployed to) upwards.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	Order int32 `json:"order,omitempty"`

	// orgRef names the SalesforceOrg (same namespace) this stage deploys to. It may name an org
	// that does not exist yet; the stage is then not Ready until it does.
	// +required
	OrgRef LocalObjectReference `json:"orgRef"`

	// state Active (default) holds the org: it cannot be made Inactive or deleted while mapped.
	// +optional
	// +kubebuilder:default=Active
	State State `json:"state,omitempty"`

	// branch is the Git branch whose content this stage receives.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\s~^:?*\[\\]+$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.startsWith('/') && !self.endsWith('/') && !self.endsWith('.lock')",message="branch must be a valid Git branch name (no '..', no leading or trailing '/', not ending in '.lock')"
	Branch string `json:"branch,omitempty"`
}

// PipelineStageStatus is what the controller last observed of the stage.
type PipelineStageStatus struct {
	// conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// orgConnection mirrors the connection of the org this stage maps to.
	// +optional
	OrgConnection ConnectionState `json:"orgConnection,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// PipelineStage is one stage of a deployment pipeline, mapped to a SalesforceOrg.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sfstage,categories=salesforce
// +kubebuilder:printcolumn:name="Pipeline",type=string,JSONPath=`.spec.pipeline`
// +kubebuilder:printcolumn:name="Order",type=integer,JSONPath=`.spec.order`
// +kubebuilder:printcolumn:name="Org",type=string,JSONPath=`.spec.orgRef.name`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Branch",type=string,JSONPath=`.spec.branch`,priority=1
// +kubebuilder:printcolumn:name="Connection",type=string,JSONPath=`.status.orgConnection`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:selectablefield:JSONPath=`.spec.pipeline`
// +kubebuilder:selectablefield:JSONPath=`.spec.orgRef.name`
// +kubebuilder:selectablefield:JSONPath=`.spec.state`
type PipelineStage struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the stage.
	// +required
	Spec PipelineStageSpec `json:"spec"`

	// status is what the controller last observed.
	// +optional
	Status PipelineStageStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PipelineStageList is a list of PipelineStage.
type PipelineStageList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PipelineStage `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PipelineStage{}, &PipelineStageList{})
}

// IsActive reports whether the stage holds its org.
func (s *PipelineStage) IsActive() bool { return s.Spec.State != StateInactive }
