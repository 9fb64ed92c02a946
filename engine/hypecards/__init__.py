"""HypeCards: personalised image cards (templates, rendering, storage, the cards role). docs/hypecards.md."""
