package v1alpha1

// State says whether an object takes part in the work: an Inactive org is never checked, an
// Inactive stage does not hold its org.
// +kubebuilder:validation:Enum=Active;Inactive
type State string

const (
	// StateActive is the default: the object is in use.
	StateActive State = "Active"
	// StateInactive keeps the object declared but out of use.
	StateInactive State = "Inactive"
)

// ConnectionState is the last known health of the connection to an org.
// +kubebuilder:validation:Enum=Connected;Disconnected;Unknown
type ConnectionState string

const (
	// ConnectionConnected means the last check authenticated and read the org's facts.
	ConnectionConnected ConnectionState = "Connected"
	// ConnectionDisconnected means the last check failed; the Ready condition says why.
	ConnectionDisconnected ConnectionState = "Disconnected"
	// ConnectionUnknown means the org is not being checked (Inactive, suspended) or not yet checked.
	ConnectionUnknown ConnectionState = "Unknown"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the referenced object, in the same namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}
