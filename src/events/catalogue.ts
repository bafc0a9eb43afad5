import { z } from 'zod';
import { defineEvent } from './define.js';

// The EduPulse events. Field names and order are the original service's serde output
// (snake_case, struct order); timestamps are RFC 3339 strings as chrono writes them.
const timestamp = z.iso.datetime({ offset: true });

export const LessonPublished = defineEvent({
  type: 'lesson-published',
  aggregateType: 'lesson',
  schema: z.object({
    lesson_id: z.uuid(),
    author_id: z.uuid(),
    title: z.string().min(1).max(500),
    published_at: timestamp,
  }),
  aggregateId: (p) => p.lesson_id,
});

export const QuizSubmitted = defineEvent({
  type: 'quiz-submitted',
  aggregateType: 'quiz',
  schema: z.object({
    quiz_id: z.uuid(),
    student_id: z.uuid(),
    score: z.number().finite().min(0),
    submitted_at: timestamp,
  }),
  aggregateId: (p) => p.quiz_id,
});

/** A student joined a course; a course's enrolments stay in order. */
export const EnrollmentCreated = defineEvent({
  type: 'enrollment-created',
  aggregateType: 'course',
  schema: z.object({
    enrollment_id: z.uuid(),
    course_id: z.uuid(),
    student_id: z.uuid(),
    enrolled_at: timestamp,
  }),
  aggregateId: (p) => p.course_id,
});

/** A student finished a lesson; one student's progress stays in order. */
export const LessonCompleted = defineEvent({
  type: 'lesson-completed',
  aggregateType: 'student',
  schema: z.object({
    lesson_id: z.uuid(),
    student_id: z.uuid(),
    completed_at: timestamp,
    duration_seconds: z.number().int().min(0),
  }),
  aggregateId: (p) => p.student_id,
});

export const catalogue = [
  LessonPublished,
  QuizSubmitted,
  EnrollmentCreated,
  LessonCompleted,
] as const;
