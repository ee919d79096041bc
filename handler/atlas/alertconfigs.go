package atlas

import "context"

// AlertConfig is the part of a project's alert configuration the guard
// reads: which event it alerts on and whether it is on. Atlas omits enabled
// when false (its default).
type AlertConfig struct {
	ID            string `json:"id"`
	EventTypeName string `json:"eventTypeName"`
	Enabled       bool   `json:"enabled"`
}

// AlertConfigs returns every alert configuration of the project (GET
// …/alertConfigs, version 2023-01-01; Atlas requires Project Read Only), all
// pages, in Atlas's order, without duplicates (by id). No configurations is
// an empty, non-nil slice.
func (c *Client) AlertConfigs(ctx context.Context, groupID string) ([]AlertConfig, error) {
	const op = "AlertConfigs"
	if err := checkGroupID(op, groupID); err != nil {
		return nil, err
	}
	items, err := listAll[AlertConfig](ctx, c, op, "/api/atlas/v2/groups/"+groupID+"/alertConfigs", acceptEAR)
	if err != nil {
		return nil, err
	}
	return dedupe(items, func(a AlertConfig) string { return a.ID }), nil
}
