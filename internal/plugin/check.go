package plugin

import (
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func (o *options) testCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "test NAME",
		Short: "Ask the operator to check an org now, wait for its answer, exit non-zero unless Ready",
		Long: `Test a SalesforceOrg's connection now: sets the salesforce.sfops.io/reconcile-requested-at
annotation, waits until the operator echoes it to status.lastHandledReconcileAt, and prints the
connection and readiness with the reason and message that explain them. Exit code 0 when Ready,
1 when not (not Connected, or Connected but not Ready, e.g. a spec.type that does not match the
org: TypeMismatch), 2 when the operator did not answer in time (or the org could not be read):
usable as a CI gate.`,
		Example: `  kubectl salesforce test acme-uat
  kubectl salesforce test acme-uat --timeout 30s || echo "acme-uat is not Ready"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			kc, org, err := o.existingOrg(ctx, args[0])
			if err != nil {
				return err
			}
			v, err := requestCheck(ctx, kc, org)
			if err != nil {
				return err
			}
			ans, err := waitForAnswer(ctx, kc, client.ObjectKeyFromObject(org), v, timeout)
			if err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), ans)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "How long to wait for the operator's answer.")
	return cmd
}
