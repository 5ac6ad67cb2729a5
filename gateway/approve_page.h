/* approve_page.h: the approval page's HTML (approve_page_html.c), used by approve_page.c. */
#ifndef GATE_APPROVE_PAGE_H
#define GATE_APPROVE_PAGE_H

#include <jansson.h>
#include <stdbool.h>

#include "gate.h"

struct page_policy {
    bool known; /* the tool still has a policy */
    char description[512];
    const char *isolation, *reversible;
};

struct page_form {
    const char *token;        /* the decision token (hidden field), or NULL when signed in */
    const char *signed_in_as; /* the approver's name, or NULL */
    char csrf[65];
};

extern const char page_css[];

/* Append text to b, HTML-escaped (& < > " '). */
void page_escape(struct gate_buf *b, const char *text);
void page_begin(struct gate_buf *b, const char *title);
void page_end(struct gate_buf *b);
void page_error_body(struct gate_buf *b, const char *code, const char *message);
/* One call: its facts, arguments, and the decision form while pending, else its outcome. notice
 * (may be NULL) says why a decision just posted was not taken. */
void page_call(struct gate_buf *b, const json_t *rec, const struct page_policy *pp,
               const struct page_form *form, const char *notice);
/* The queue: {"approvals":[...],"next_cursor"?} of approval_list. */
void page_queue(struct gate_buf *b, const json_t *list, const char *status,
                const struct page_form *form);
void page_signin(struct gate_buf *b, const char *problem);

#endif
