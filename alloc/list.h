/* SPDX-License-Identifier: MIT */
/* Intrusive doubly linked lists, after the kernel's <linux/list.h>. */
#ifndef KVC_ALLOC_LIST_H
#define KVC_ALLOC_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_head {
	struct list_head *next, *prev;
};

#define list_entry(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))
#define list_first_entry(head, type, member) \
	list_entry((head)->next, type, member)
#define list_last_entry(head, type, member) \
	list_entry((head)->prev, type, member)
#define list_for_each(pos, head) \
	for (pos = (head)->next; pos != (head); pos = pos->next)

static inline void list_init(struct list_head *head)
{
	head->next = head->prev = head;
}

static inline bool list_empty(const struct list_head *head)
{
	return head->next == head;
}

static inline void list_add(struct list_head *item, struct list_head *head)
{
	item->next = head->next;
	item->prev = head;
	head->next->prev = item;
	head->next = item;
}

static inline void list_del_init(struct list_head *item)
{
	item->prev->next = item->next;
	item->next->prev = item->prev;
	list_init(item);
}

static inline void list_move(struct list_head *item, struct list_head *head)
{
	item->prev->next = item->next;
	item->next->prev = item->prev;
	list_add(item, head);
}

#endif /* KVC_ALLOC_LIST_H */
