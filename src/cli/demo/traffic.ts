import { randomUUID } from 'node:crypto';
import {
  EnrollmentCreated,
  LessonCompleted,
  LessonPublished,
  QuizSubmitted,
} from '../../events/catalogue.js';
import type { OutboxEvent } from '../../events/define.js';

const TITLES = [
  'Fractions without fear',
  'The water cycle',
  'Photosynthesis in five minutes',
  'Reading a bar chart',
  'Past simple vs. present perfect',
  'Newton’s first law',
  'Prime numbers',
  'Writing a persuasive paragraph',
];

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

/**
 * Simulated EduPulse users. Each call to `next()` is one user action, i.e. one
 * transaction's worth of events: a teacher publishes a lesson, a student enrols in a
 * course, or a student completes a lesson and submits its quiz.
 */
export function createTraffic() {
  const teachers = Array.from({ length: 5 }, () => randomUUID());
  const students = Array.from({ length: 50 }, () => randomUUID());
  const courses = Array.from({ length: 4 }, () => randomUUID());
  const lessons: string[] = [];

  const publishLesson = (): OutboxEvent[] => {
    const lessonId = randomUUID();
    lessons.push(lessonId);
    return [
      LessonPublished.create({
        lesson_id: lessonId,
        author_id: pick(teachers),
        title: pick(TITLES),
        published_at: new Date().toISOString(),
      }),
    ];
  };

  return {
    next(): OutboxEvent[] {
      const roll = Math.random();
      if (lessons.length === 0 || roll < 0.1) return publishLesson();
      if (roll < 0.3) {
        return [
          EnrollmentCreated.create({
            enrollment_id: randomUUID(),
            course_id: pick(courses),
            student_id: pick(students),
            enrolled_at: new Date().toISOString(),
          }),
        ];
      }
      const student = pick(students);
      const lesson = pick(lessons);
      const now = new Date().toISOString();
      return [
        LessonCompleted.create({
          lesson_id: lesson,
          student_id: student,
          completed_at: now,
          duration_seconds: 120 + Math.floor(Math.random() * 1500),
        }),
        QuizSubmitted.create({
          quiz_id: lesson,
          student_id: student,
          score: Math.round(Math.random() * 1000) / 10,
          submitted_at: now,
        }),
      ];
    },
  };
}
