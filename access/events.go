package access

import (
	"context"

	"github.com/mediatorhq/mediator/wire"
)

// Notifier delivers workflow events. Notify must not block the workflow:
// it queues and returns (notify.Notifier).
type Notifier interface {
	Notify(ctx context.Context, e wire.Event)
}

// notify hands e to the notifier, if any.
func (s *Service) notify(ctx context.Context, e wire.Event) {
	if s.notifier == nil {
		return
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = s.now().UTC()
	}
	s.notifier.Notify(ctx, e)
}
